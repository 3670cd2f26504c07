"""Pass/fail criteria from config and the verdicts they give.

A criterion: {"property": "robustness-inf" (or "robustness" + "norm": "inf"), "radius": 0.02,
"min_fraction": 0.95, "basis": "certified" | "estimate", optional "model"} reads "at least
95% of inputs are safe within radius 0.02". With the input states of module
saferisk.audit.states at that radius (n inputs, failed ones counted as unknown):
  basis certified: fraction_low = #proven safe / n, fraction_high = 1 - #proven unsafe / n
  basis estimate:  fraction_low = #estimate safe / n, fraction_high = fraction_low + #unknown / n
  PASS when fraction_low >= min_fraction, FAIL when fraction_high < min_fraction,
  INCONCLUSIVE otherwise (bracket too wide, failures) and whenever there are no results.
  Certified verdicts are sound; estimate verdicts are not guarantees and are labelled as such.
  Verdicts combine as: any FAIL -> FAIL, else any INCONCLUSIVE -> INCONCLUSIVE, else PASS; a
  combined verdict's basis is 'certified', 'estimate' or 'mixed'.
A measured property that no criterion reads gets NO CRITERION (and does not affect the overall
verdict); a model with no criterion at all is INCONCLUSIVE overall.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from saferisk.audit.states import input_states
from saferisk.errors import ConfigError
from saferisk.norm_names import parse_norm

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
NORM_NAMES = {"inf": "L∞", "2": "L2", "1": "L1"}
UNIT_NAMES = {"input": "input units", "domain": "fraction of domain width"}
NO_CRITERION = "NO CRITERION"  # a measured property no criterion reads: measurements only
BASES = ("certified", "estimate")
_NORM_SUFFIX = re.compile(r"^(?P<property>.+)-(?P<norm>inf|1|2)$")


def split_property_key(key: str) -> tuple[str, str | None]:
    """'robustness-inf' -> ('robustness', 'inf'); 'robustness' -> ('robustness', None)."""
    match = _NORM_SUFFIX.match(key)
    return (match["property"], match["norm"]) if match else (key, None)


def norm_name(norm: str | None) -> str:
    """'L∞', 'L2', 'L1' for a canonical norm name."""
    return NORM_NAMES.get(str(norm), f"L{norm}")


def unit_text(scale: str | None) -> str:
    """The unit radii are measured in: 'input units' (scale input) or 'fraction of domain
    width' (scale domain: each feature's change divided by its domain width)."""
    return "/".join(UNIT_NAMES.get(s, s) for s in str(scale or "").split("/") if s) or "unit not recorded"


def rows_unit(rows: pd.DataFrame) -> str:
    """unit_text of the table rows' `scale` column."""
    scales = sorted({str(s) for s in rows["scale"] if str(s)}) if "scale" in rows else []
    return unit_text("/".join(scales))


def allowance_text(n: int, min_fraction: float) -> str:
    """' (of 24 inputs at most 1 may be not safe)': how many inputs a share leaves, stated when
    the number of inputs is small enough that one input decides ('' for all inputs or n > 200)."""
    if min_fraction >= 1 or n <= 0 or n > 200:
        return ""
    allowed = int(math.floor(n * (1 - min_fraction) + 1e-9))
    return f" (of {n} inputs at most {allowed} may be not safe)"


def share_text(fraction: float) -> str:
    """'all inputs' for 1, else 'at least 95% of inputs' (no trailing zeros)."""
    return "all inputs" if fraction >= 1 else f"at least {100 * fraction:.4g}% of inputs"


@dataclass(frozen=True)
class Criterion:
    property: str
    norm: str | None
    radius: float
    min_fraction: float
    basis: str = "certified"
    model: str | None = None
    scale: str | None = None  # the unit of the radius ('input' | 'domain'), from the rows it reads

    @property
    def label(self) -> str:
        """'robustness-inf: at least 95% of inputs safe within L∞ radius 0.02 (input units),
        certified': property key, share, norm, radius and unit (when known), basis."""
        if self.norm:
            prop, radius = f"{self.property}-{self.norm}", f"{norm_name(self.norm)} radius {self.radius:g}"
        else:
            prop, radius = f"{self.property} (each measured norm)", f"radius {self.radius:g}"
        unit = f" ({unit_text(self.scale)})" if self.scale else ""
        return f"{prop}: {share_text(self.min_fraction)} safe within {radius}{unit}, {self.basis}"

    @property
    def property_key(self) -> str:
        return f"{self.property}-{self.norm}" if self.norm else self.property

    def matches(self, model: str, property_name: str, norm: str) -> bool:
        if self.model is not None and self.model != model:
            return False
        return self.property == property_name and (self.norm is None or self.norm == norm)

    def to_dict(self) -> dict:
        return {"property": self.property, "norm": self.norm, "radius": self.radius,
                "min_fraction": self.min_fraction, "basis": self.basis, "model": self.model, "scale": self.scale}

    @staticmethod
    def from_dict(data: Mapping) -> "Criterion":
        """The inverse of `to_dict` (no validation: the dict was written from a Criterion)."""
        return Criterion(data["property"], data["norm"], data["radius"], data["min_fraction"], data["basis"],
                         data["model"], data.get("scale"))


def parse_criteria(items: Iterable[Mapping] | None) -> list[Criterion]:
    """Criteria from config dicts; ConfigError naming the entry on a bad one."""
    criteria = []
    for index, item in enumerate(items or ()):
        where = f"criteria[{index}]"
        if isinstance(item, Criterion):
            criteria.append(item)
            continue
        unknown = set(item) - {"property", "norm", "radius", "min_fraction", "basis", "model"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            prop, norm = str(item["property"]), item.get("norm")
            radius, min_fraction = float(item["radius"]), float(item["min_fraction"])
        except KeyError as exc:
            raise ConfigError(f"{where}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if norm is None:
            prop, norm = split_property_key(prop)
        else:
            norm = parse_norm(norm)
        basis = str(item.get("basis", "certified"))
        if basis not in BASES:
            raise ConfigError(f"{where}: basis must be 'certified' or 'estimate', got {basis!r}")
        if not radius > 0:
            raise ConfigError(f"{where}: radius must be > 0, got {radius}")
        if not 0 <= min_fraction <= 1:
            raise ConfigError(f"{where}: min_fraction must be in [0, 1], got {min_fraction}")
        model = item.get("model")
        criteria.append(Criterion(prop, norm, radius, min_fraction, basis, None if model is None else str(model)))
    return criteria


@dataclass
class Verdict:
    """A verdict of one criterion (criterion set) or of a combination (criterion None)."""

    model: str
    scope: str  # criterion label, property key, or 'overall'
    verdict: str
    basis: str | None  # 'certified' | 'estimate' | 'mixed' | None (no criterion)
    reason: str
    fraction_low: float | None = None
    fraction_high: float | None = None
    n_inputs: int = 0
    criterion: Criterion | None = None

    @property
    def label(self) -> str:
        """Verdict with its basis in words, e.g. 'PASS (estimate only: not a guarantee)'."""
        if self.basis == "estimate" and self.verdict != INCONCLUSIVE:
            return f"{self.verdict} (estimate only: not a guarantee)"
        if self.basis == "mixed" and self.verdict == PASS:
            return f"{self.verdict} (partly on estimates: not a guarantee)"
        if self.basis == "certified" and self.verdict == PASS:
            return f"{self.verdict} (certified)"
        return self.verdict

    def to_dict(self) -> dict:
        return {"model": self.model, "scope": self.scope, "verdict": self.verdict, "basis": self.basis,
                "label": self.label, "reason": self.reason, "fraction_low": self.fraction_low,
                "fraction_high": self.fraction_high, "n_inputs": self.n_inputs,
                "criterion": self.criterion.to_dict() if self.criterion else None}

    @staticmethod
    def from_dict(data: Mapping) -> "Verdict":
        """The inverse of `to_dict` (its 'label' is derived, so not read)."""
        criterion = data["criterion"]
        return Verdict(data["model"], data["scope"], data["verdict"], data["basis"], data["reason"],
                       data["fraction_low"], data["fraction_high"], data["n_inputs"],
                       None if criterion is None else Criterion.from_dict(criterion))


def evaluate_criterion(rows: pd.DataFrame, criterion: Criterion, model: str) -> Verdict:
    """Verdict of one criterion on the rows of one model and matching property/norm."""
    n = len(rows)

    def verdict(value: str, reason: str, low=None, high=None) -> Verdict:
        return Verdict(model, criterion.label, value, criterion.basis, reason, low, high, n, criterion)

    if n == 0:
        return verdict(INCONCLUSIVE, f"no results for {criterion.property_key}")
    states = input_states(rows, criterion.radius)
    unsafe = int(states["proven_unsafe"].sum())
    r = f"{criterion.radius:g}"
    head = f"{criterion.property}, {norm_name(criterion.norm)} norm: "
    within = f"within radius {r} ({rows_unit(rows)})"
    witnesses = f"{unsafe} {'has' if unsafe == 1 else 'have'} a witness within {r}"
    if criterion.basis == "certified":
        safe = int(states["proven_safe"].sum())
        low, high = safe / n, (n - unsafe) / n
        what = f"{head}{safe} of {n} inputs certified safe {within}; {witnesses}"
    else:
        safe = int(states["estimate_safe"].sum())
        unknown = int(states["estimate_unknown"].sum())
        low, high = safe / n, (safe + unknown) / n
        what = f"{head}{safe} of {n} inputs estimated safe {within} (not a guarantee); {witnesses}; {unknown} unknown"
    what += f"; required: {share_text(criterion.min_fraction)}{allowance_text(n, criterion.min_fraction)}"
    if low >= criterion.min_fraction:
        return verdict(PASS, what, low, high)
    if high < criterion.min_fraction:
        return verdict(FAIL, what, low, high)
    n_failed = int((~rows["status"].isin(["ok", "violated_at_input"])).sum())
    cause = f"{n_failed} inputs failed" if n_failed else "the bracket straddles the required fraction"
    return verdict(INCONCLUSIVE, f"{what}; between {low:.1%} and {high:.1%} safe ({cause})", low, high)


def combine(model: str, scope: str, verdicts: list[Verdict], empty_reason: str) -> Verdict:
    """Combined verdict: any FAIL -> FAIL, else any INCONCLUSIVE -> INCONCLUSIVE, else PASS."""
    if not verdicts:
        return Verdict(model, scope, INCONCLUSIVE, None, empty_reason)
    values = [v.verdict for v in verdicts]
    value = FAIL if FAIL in values else INCONCLUSIVE if INCONCLUSIVE in values else PASS
    bases = {v.basis for v in verdicts if v.verdict == value}
    basis = bases.pop() if len(bases) == 1 else "mixed"
    if len(verdicts) == 1:
        return Verdict(model, scope, value, basis, verdicts[0].reason)
    counts = ", ".join(f"{values.count(v)} {v}" for v in (PASS, FAIL, INCONCLUSIVE) if v in values)
    return Verdict(model, scope, value, basis, f"{len(values)} criteria: {counts}")
