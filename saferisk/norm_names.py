"""The norms' names: 'inf', '2', '1', parsed from what users write (torch-free: the workflow's
config checks and the audit's verdicts need them without the tensor code of saferisk.norms)."""

from __future__ import annotations

import math

from saferisk.errors import ConfigError

NORMS = ("inf", "2", "1")
_ALIASES = {"inf": "inf", "linf": "inf", "l-inf": "inf", "l_inf": "inf", "infinity": "inf",
            "2": "2", "l2": "2", "1": "1", "l1": "1"}


def parse_norm(value) -> str:
    """Canonical norm name 'inf', '2' or '1' from user input ('Linf', 2, 'l1', inf, ...)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    key = str(value).strip().lower().replace(".0", "")
    if key not in _ALIASES:
        raise ConfigError(f"unknown norm {value!r}; choose one of: inf, 2, 1")
    return _ALIASES[key]


def norm_order(norm: str) -> float:
    return math.inf if norm == "inf" else float(norm)
