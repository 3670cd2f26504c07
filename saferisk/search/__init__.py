"""How to LOOK for risks: batched pattern search, sampling, gradient-guided starts,
witness shrinking, Lipschitz-metric search and reachable ranges.

The names below load their modules on first use (PEP 562): `saferisk.search.config` alone (what
the workflow's config checks read) does not import torch."""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
    from saferisk.search.config import SEARCH_MODES, SearchConfig
    from saferisk.search.gps import PatternSearchResult, pattern_search, poll_points
    from saferisk.search.lipschitz import lipschitz_search
    from saferisk.search.reach import ReachResult, reachable_range
    from saferisk.search.region import Evaluator, Region
    from saferisk.search.witness import Witness, find_witness

_EXPORTS = {
    "SEARCH_MODES": "config", "SearchConfig": "config",
    "PatternSearchResult": "gps", "pattern_search": "gps", "poll_points": "gps",
    "lipschitz_search": "lipschitz", "ReachResult": "reach", "reachable_range": "reach",
    "Evaluator": "region", "Region": "region", "Witness": "witness", "find_witness": "witness",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    """An exported name, or a submodule (`saferisk.search.<module>` after `import saferisk.search`), imported now."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"saferisk.search.{_EXPORTS[name]}"), name)
    try:
        return importlib.import_module(f"saferisk.search.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"saferisk.search.{name}":  # (a missing dependency of the submodule: its own error)
            raise
    raise AttributeError(f"module 'saferisk.search' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_EXPORTS})
