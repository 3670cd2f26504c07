"""Summary statistics per (model, property, norm) and the fraction-safe curves.

At a radius r each input is, from its bracket radius_lower <= r* <= radius_upper:
  proven safe    status ok and radius_lower >= r            (sound: certified bound)
  proven unsafe  violated at x0, or radius_upper <= r        (a re-checked witness)
  unknown        otherwise (bracket straddles r, not certified, failed)
certified_fraction(r) = #proven safe / n   (a lower bound on the true fraction safe at r)
risk_fraction(r)      = #proven unsafe / n (so 1 - risk_fraction is an upper bound)
estimate_fraction(r)  = #(radius_estimate >= r and not proven unsafe) / n  (NOT a guarantee)
n counts every assessed or failed input; a failed input is never counted as safe.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from saferisk.audit.table import MISSING_PREFIX
from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT

RADIUS_KINDS = ("radius_lower", "radius_estimate", "radius_upper")
DEFAULT_GRID_POINTS = 10


@dataclass
class RadiusStats:
    """NaN-aware statistics of one radius column over the inputs of a group."""

    mean: float | None
    median: float | None
    min: float | None
    max: float | None
    n_values: int
    n_null: int

    @staticmethod
    def of(values: pd.Series) -> "RadiusStats":
        finite = values.dropna().to_numpy(dtype=float)
        if finite.size == 0:
            return RadiusStats(None, None, None, None, 0, int(values.size))
        return RadiusStats(float(finite.mean()), float(np.median(finite)), float(finite.min()),
                           float(finite.max()), int(finite.size), int(values.size - finite.size))


@dataclass
class GroupSummary:
    """All inputs of one (model, property, norm), pooled over input sets."""

    model: str
    property: str
    norm: str
    scale: str
    max_radius: float | None
    input_sets: list[str]
    n_inputs: int
    n_ok: int
    n_violated_at_input: int
    n_failed: int
    failure_reasons: dict[str, int]
    missing_shards: list[str]
    radius_lower: RadiusStats
    radius_estimate: RadiusStats
    radius_upper: RadiusStats
    n_risks_found: int
    n_estimate_exceeds_upper: int
    radii: list[float]
    certified_fraction: list[float]
    estimate_fraction: list[float]
    risk_fraction: list[float]
    certify_methods: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.property}-{self.norm}"

    @property
    def complete(self) -> bool:
        """Every expected input present and assessed (no failure, no missing shard)."""
        return self.n_inputs > 0 and self.n_failed == 0 and not self.missing_shards

    def availability_note(self) -> str | None:
        """Plain words on what is missing, e.g. '2 of 30 inputs failed (NaN outputs)'."""
        notes = []
        if self.missing_shards:
            notes.append(f"{len(self.missing_shards)} result shard(s) missing "
                         f"({', '.join(self.missing_shards)}); their inputs are not counted")
        if self.n_inputs == 0:
            notes.append("no inputs were assessed")
        elif self.n_failed:
            reasons = "; ".join(f"{reason}: {count}" for reason, count in self.failure_reasons.items())
            notes.append(f"{self.n_failed} of {self.n_inputs} inputs failed ({reasons})")
        return "; ".join(notes) or None


def _failure_reason(status: str) -> str:
    return status.split(":", 1)[1].strip() if ":" in status else status


def input_states(rows: pd.DataFrame, radius: float) -> dict[str, np.ndarray]:
    """Boolean arrays over the rows: proven_safe, proven_unsafe, estimate_safe, estimate_unknown
    at `radius` (see module docstring)."""
    ok = (rows["status"] == STATUS_OK).to_numpy()
    violated = (rows["status"] == STATUS_VIOLATED_AT_INPUT).to_numpy()
    lower = rows["radius_lower"].to_numpy(dtype=float)
    upper = rows["radius_upper"].to_numpy(dtype=float)
    estimate = rows["radius_estimate"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        unsafe = violated | (upper <= radius)
        safe = ok & (lower >= radius) & ~unsafe
        estimate_safe = ok & (estimate >= radius) & ~unsafe
        estimate_unknown = ~estimate_safe & ~unsafe & (~ok | np.isnan(estimate))
    return {"proven_safe": safe, "proven_unsafe": unsafe, "estimate_safe": estimate_safe,
            "estimate_unknown": estimate_unknown}


def radius_grid(max_radius: float | None, extra: list[float] = (), points: int = DEFAULT_GRID_POINTS) -> list[float]:
    """max_radius * (1/points, 2/points, ..., 1) plus the criteria radii, sorted, unique."""
    grid = set(float(r) for r in extra)
    if max_radius and max_radius > 0:
        grid.update(round(max_radius * k / points, 12) for k in range(1, points + 1))
    return sorted(grid)


def summarize_group(rows: pd.DataFrame, radii: list[float] | None = None) -> GroupSummary:
    """GroupSummary of the rows of one (model, property, norm)."""
    first = rows.iloc[0]
    missing = rows["status"].str.startswith(MISSING_PREFIX)
    inputs = rows.loc[~missing]
    status = inputs["status"]
    ok = status == STATUS_OK
    violated = status == STATUS_VIOLATED_AT_INPUT
    failed = ~(ok | violated)
    max_radius = float(inputs["max_radius"].max()) if inputs["max_radius"].notna().any() else None
    radii = radius_grid(max_radius) if radii is None else sorted(set(radii))
    n = len(inputs)
    curves = {"certified": [], "estimate": [], "risk": []}
    for r in radii:
        states = input_states(inputs, r)
        curves["certified"].append(float(states["proven_safe"].sum() / n) if n else float("nan"))
        curves["estimate"].append(float(states["estimate_safe"].sum() / n) if n else float("nan"))
        curves["risk"].append(float(states["proven_unsafe"].sum() / n) if n else float("nan"))
    reasons = Counter(_failure_reason(s) for s in status[failed])
    methods = Counter(m for m in inputs.loc[inputs["radius_lower"].notna(), "radius_lower_method"] if m)
    scales = sorted(set(inputs["scale"]) - {""}) or [""]
    return GroupSummary(
        model=str(first["model"]), property=str(first["property"]), norm=str(first["norm"]),
        scale="/".join(scales), max_radius=max_radius, input_sets=sorted(set(rows["input_set"])),
        n_inputs=n, n_ok=int(ok.sum()), n_violated_at_input=int(violated.sum()), n_failed=int(failed.sum()),
        failure_reasons=dict(sorted(reasons.items())),
        missing_shards=sorted(rows.loc[missing, "status"].str.removeprefix(MISSING_PREFIX)),
        radius_lower=RadiusStats.of(inputs["radius_lower"].where(~failed)),
        radius_estimate=RadiusStats.of(inputs["radius_estimate"].where(~failed)),
        radius_upper=RadiusStats.of(inputs["radius_upper"].where(~failed)),
        n_risks_found=int((inputs["radius_upper"].notna() | violated).sum()),
        n_estimate_exceeds_upper=int(inputs["estimate_exceeds_upper"].sum()),
        radii=list(radii), certified_fraction=curves["certified"], estimate_fraction=curves["estimate"],
        risk_fraction=curves["risk"], certify_methods=dict(sorted(methods.items())),
    )


def group_key(property_name: str, norm: str) -> str:
    return f"{property_name}-{norm}"


_NORM_SUFFIX = re.compile(r"^(?P<property>.+)-(?P<norm>inf|1|2)$")


def split_property_key(key: str) -> tuple[str, str | None]:
    """'robustness-inf' -> ('robustness', 'inf'); 'robustness' -> ('robustness', None)."""
    match = _NORM_SUFFIX.match(key)
    return (match["property"], match["norm"]) if match else (key, None)


def summary_to_dict(group: GroupSummary) -> dict:
    """JSON-able dict (NaN -> None)."""
    data = asdict(group)
    data["key"] = group.key
    data["availability_note"] = group.availability_note()
    for name in ("certified_fraction", "estimate_fraction", "risk_fraction"):
        data[name] = [None if np.isnan(v) else v for v in data[name]]
    return data


@dataclass
class AuditSummary:
    """Everything the reports need beyond the table: group statistics and verdicts."""

    groups: list[GroupSummary]
    criteria: list
    criterion_verdicts: list
    property_verdicts: list
    model_verdicts: list

    @property
    def models(self) -> list[str]:
        return sorted({g.model for g in self.groups} | {v.model for v in self.model_verdicts})

    def for_model(self, model: str) -> "AuditSummary":
        keep = lambda items: [x for x in items if x.model == model]  # noqa: E731
        return AuditSummary(keep(self.groups), self.criteria, keep(self.criterion_verdicts),
                            keep(self.property_verdicts), keep(self.model_verdicts))

    def overall(self, model: str):
        return next(v for v in self.model_verdicts if v.model == model)

    def to_dict(self) -> dict:
        """JSON-able (saferisk.io.dumps_json) form, e.g. results/tables/<m>.summary.json."""
        return {"groups": [summary_to_dict(g) for g in self.groups],
                "criteria": [c.to_dict() for c in self.criteria],
                "criterion_verdicts": [v.to_dict() for v in self.criterion_verdicts],
                "property_verdicts": [v.to_dict() for v in self.property_verdicts],
                "model_verdicts": [v.to_dict() for v in self.model_verdicts]}


def summarize(table: pd.DataFrame, criteria=(), radii: list[float] | None = None,
              models: list[str] | None = None) -> AuditSummary:
    """Group statistics per (model, property, norm) and verdicts against `criteria`
    (Criterion objects or config dicts, see saferisk.audit.verdict).

    radii: the radii of the fraction curves (default: 10 steps up to each group's max_radius);
    the criteria radii are always added. models: models expected in the audit (a model with no
    rows at all, e.g. a failed export, then gets INCONCLUSIVE verdicts instead of vanishing).
    A criterion without `model` applies to every model that has rows for its property (and to
    models without any rows); one naming a model always applies to it.
    """
    from saferisk.audit.verdict import NO_CRITERION, Verdict, combine, evaluate_criterion, parse_criteria

    criteria = parse_criteria(criteria)
    groups = []
    for (model, prop, norm), rows in table.groupby(["model", "property", "norm"], sort=True):
        extra = [c.radius for c in criteria if c.matches(model, prop, norm)]
        if radii is None:
            max_radius = rows["max_radius"].max()
            grid = radius_grid(None if pd.isna(max_radius) else float(max_radius), extra)
        else:
            grid = sorted(set(map(float, radii)) | set(extra))
        groups.append(summarize_group(rows, grid))
    all_models = sorted(set(table["model"]) | set(models or ()))
    criterion_verdicts, property_verdicts, model_verdicts = [], [], []
    for model in all_models:
        model_rows = table.loc[table["model"] == model]
        verdicts_by_property: dict[str, list] = {}
        for criterion in criteria:
            if criterion.model is not None and criterion.model != model:
                continue
            mask = model_rows["property"] == criterion.property
            if criterion.model is None and len(model_rows) and not mask.any():
                continue  # a criterion without model reads only the models that measure the property
            if criterion.norm is not None:
                mask &= model_rows["norm"] == criterion.norm
            matched = model_rows.loc[mask]
            if criterion.norm is None and len(matched):
                for norm, rows in matched.groupby("norm", sort=True):
                    verdict = evaluate_criterion(rows, _restrict_to_norm(criterion, norm), model)
                    criterion_verdicts.append(verdict)
                    verdicts_by_property.setdefault(group_key(criterion.property, norm), []).append(verdict)
            else:
                verdict = evaluate_criterion(matched, criterion, model)
                criterion_verdicts.append(verdict)
                verdicts_by_property.setdefault(criterion.property_key, []).append(verdict)
        for key in sorted(set(verdicts_by_property) | {g.key for g in groups if g.model == model}):
            if key in verdicts_by_property:
                property_verdicts.append(combine(model, key, verdicts_by_property[key], ""))
            else:
                property_verdicts.append(Verdict(model, key, NO_CRITERION, None,
                                                 "no criterion reads this property: measurements only"))
        model_verdicts.append(combine(model, "overall", [v for vs in verdicts_by_property.values() for v in vs],
                                      "no criteria configured"))
    return AuditSummary(groups, criteria, criterion_verdicts, property_verdicts, model_verdicts)


def _restrict_to_norm(criterion, norm: str):
    """The criterion restricted to one norm (a criterion without norm applies to each)."""
    import dataclasses

    return dataclasses.replace(criterion, norm=norm)
