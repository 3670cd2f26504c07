"""Pass/fail criteria as configured: the one check that a criterion names something measured,
used by the plan (against what the configured models measure) and by `saferisk report`
(against what a results table holds), and the form the summary takes them in."""

from __future__ import annotations

from typing import Any, Iterable

from saferisk.errors import ConfigError


def check_measured(criterion: dict[str, Any], measured: Iterable[tuple[str, str]], key: str, by: str) -> None:
    """ConfigError unless some measured (property, norm) pair matches the criterion's property
    and (when given) norm: a criterion on something never measured is a typo, not a pass."""
    measured = set(measured)
    prop, norm = str(criterion["property"]), criterion.get("norm")
    norm = None if norm is None else str(norm)
    if any(p == prop and norm in (None, n) for p, n in measured):
        return
    have = ", ".join(sorted(f"{p} ({n})" for p, n in measured)) or "none"
    if norm is not None and any(p == prop for p, _ in measured):
        raise ConfigError(f"{key}.norm: property {prop!r} is not measured in norm {norm} by {by}; measured: {have}")
    where = "" if norm is None else f" in norm {norm}"
    raise ConfigError(f"{key}.property: property {prop!r}{where} is not measured by {by}; measured: {have}")


def summary_criteria(criteria: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The criteria as saferisk.audit.summarize takes them (unset optional keys dropped; norm
    and model kept, None meaning every norm / every model)."""
    return [{k: v for k, v in c.items() if v is not None or k in ("norm", "model")} for c in criteria]
