"""How to LOOK for risks: batched pattern search, sampling, gradient-guided starts,
witness shrinking, Lipschitz-metric search and reachable ranges.

The names below load their modules on first use (PEP 562): `saferisk.search.config` alone (what
the workflow's config checks read) does not import torch."""

from typing import TYPE_CHECKING

from saferisk.lazy import lazy_package

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


__getattr__, __dir__ = lazy_package(__name__, _EXPORTS, globals())
