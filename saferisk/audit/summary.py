"""Summary statistics per (model, property, norm), the fraction-safe curves and the verdicts.

At a radius r each input is, from its bracket radius_lower <= r* <= radius_upper
(saferisk.audit.states):
  proven safe    status ok and radius_lower >= r            (sound: certified bound)
  proven unsafe  violated at x0, or radius_upper <= r        (a re-checked witness)
  unknown        otherwise (bracket straddles r, not certified, failed)
certified_fraction(r) = #proven safe / n   (a lower bound on the true fraction safe at r)
risk_fraction(r)      = #proven unsafe / n (so 1 - risk_fraction is an upper bound)
estimate_fraction(r)  = #(radius_estimate >= r and not proven unsafe) / n  (NOT a guarantee)
n counts every assessed or failed input; a failed input is never counted as safe.

`summarize` computes an AuditSummary once (the workflow writes it to <m>.summary.json with
`to_dict`); `AuditSummary.from_dict` reads it back, and the reports accept either.
Imports go one way: states <- verdict <- summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from saferisk.audit.states import input_states
from saferisk.audit.verdict import NO_CRITERION, Criterion, Verdict, combine, evaluate_criterion, parse_criteria
from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT

DEFAULT_GRID_POINTS = 100  # steps of the default grid from 0 to max_radius (curves plotted as steps)
FRACTIONS = ("certified_fraction", "estimate_fraction", "risk_fraction")


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

    @staticmethod
    def from_dict(data: Mapping) -> "RadiusStats":
        return RadiusStats(data["mean"], data["median"], data["min"], data["max"], data["n_values"], data["n_null"])


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

    def availability_note(self) -> str | None:
        """Plain words on what is missing, e.g. '2 of 30 inputs failed (NaN outputs: 2)'."""
        if self.n_inputs == 0:
            return "no inputs were assessed"
        if self.n_failed:
            reasons = "; ".join(f"{reason}: {count}" for reason, count in self.failure_reasons.items())
            return f"{self.n_failed} of {self.n_inputs} inputs failed ({reasons})"
        return None

    def to_dict(self) -> dict:
        """JSON-able dict (NaN -> None), with the derived `key` and `availability_note`."""
        data = asdict(self)
        data["key"] = self.key
        data["availability_note"] = self.availability_note()
        for name in FRACTIONS:
            data[name] = [None if np.isnan(v) else v for v in data[name]]
        return data

    @staticmethod
    def from_dict(data: Mapping) -> "GroupSummary":
        """The inverse of `to_dict` (None -> NaN in the fraction curves; derived keys not read)."""
        values = {name: data[name] for name in GroupSummary.__dataclass_fields__}
        for kind in ("radius_lower", "radius_estimate", "radius_upper"):
            values[kind] = RadiusStats.from_dict(data[kind])
        for name in FRACTIONS:
            values[name] = [float("nan") if v is None else v for v in data[name]]
        return GroupSummary(**values)


def _failure_reason(status: str) -> str:
    return status.split(":", 1)[1].strip() if ":" in status else status


def radius_grid(max_radius: float | None, extra: list[float] = (), points: int = DEFAULT_GRID_POINTS) -> list[float]:
    """max_radius * (0, 1/points, 2/points, ..., 1) plus the criteria radii, sorted, unique:
    curves from r = 0, fine enough that models with different radii do not coincide."""
    grid = set(float(r) for r in extra)
    if max_radius and max_radius > 0:
        grid.update(round(max_radius * k / points, 12) for k in range(0, points + 1))
    return sorted(grid)


def summarize_group(rows: pd.DataFrame, radii: list[float]) -> GroupSummary:
    """GroupSummary of the rows of one (model, property, norm), its curves at `radii`."""
    first = rows.iloc[0]
    status = rows["status"]
    ok = status == STATUS_OK
    violated = status == STATUS_VIOLATED_AT_INPUT
    failed = ~(ok | violated)
    max_radius = float(rows["max_radius"].max()) if rows["max_radius"].notna().any() else None
    radii = sorted(set(radii))
    n = len(rows)
    curves = {"certified": [], "estimate": [], "risk": []}
    for r in radii:
        states = input_states(rows, r)
        curves["certified"].append(float(states["proven_safe"].sum() / n) if n else float("nan"))
        curves["estimate"].append(float(states["estimate_safe"].sum() / n) if n else float("nan"))
        curves["risk"].append(float(states["proven_unsafe"].sum() / n) if n else float("nan"))
    reasons = Counter(_failure_reason(s) for s in status[failed])
    methods = Counter(m for m in rows.loc[rows["radius_lower"].notna(), "radius_lower_method"] if m)
    scales = sorted(set(rows["scale"]) - {""}) or [""]
    return GroupSummary(
        model=str(first["model"]), property=str(first["property"]), norm=str(first["norm"]),
        scale="/".join(scales), max_radius=max_radius, input_sets=sorted(set(rows["input_set"])),
        n_inputs=n, n_ok=int(ok.sum()), n_violated_at_input=int(violated.sum()), n_failed=int(failed.sum()),
        failure_reasons=dict(sorted(reasons.items())),
        radius_lower=RadiusStats.of(rows["radius_lower"].where(~failed)),
        radius_estimate=RadiusStats.of(rows["radius_estimate"].where(~failed)),
        radius_upper=RadiusStats.of(rows["radius_upper"].where(~failed)),
        n_risks_found=int((rows["radius_upper"].notna() | violated).sum()),
        n_estimate_exceeds_upper=int(rows["estimate_exceeds_upper"].sum()),
        radii=list(radii), certified_fraction=curves["certified"], estimate_fraction=curves["estimate"],
        risk_fraction=curves["risk"], certify_methods=dict(sorted(methods.items())),
    )


def group_key(property_name: str, norm: str) -> str:
    return f"{property_name}-{norm}"


@dataclass
class AuditSummary:
    """Everything the reports need beyond the table: group statistics and verdicts."""

    groups: list[GroupSummary]
    criteria: list[Criterion]
    criterion_verdicts: list[Verdict]
    property_verdicts: list[Verdict]
    model_verdicts: list[Verdict]

    @property
    def models(self) -> list[str]:
        return sorted({g.model for g in self.groups} | {v.model for v in self.model_verdicts})

    def for_model(self, model: str) -> "AuditSummary":
        keep = lambda items: [x for x in items if x.model == model]  # noqa: E731
        return AuditSummary(keep(self.groups), self.criteria, keep(self.criterion_verdicts),
                            keep(self.property_verdicts), keep(self.model_verdicts))

    def overall(self, model: str) -> Verdict:
        return next(v for v in self.model_verdicts if v.model == model)

    def to_dict(self) -> dict:
        """JSON-able (saferisk.io.dumps_json) form, e.g. results/tables/<m>.summary.json."""
        return {"groups": [g.to_dict() for g in self.groups],
                "criteria": [c.to_dict() for c in self.criteria],
                "criterion_verdicts": [v.to_dict() for v in self.criterion_verdicts],
                "property_verdicts": [v.to_dict() for v in self.property_verdicts],
                "model_verdicts": [v.to_dict() for v in self.model_verdicts]}

    @staticmethod
    def from_dict(data: Mapping) -> "AuditSummary":
        """The inverse of `to_dict`: an AuditSummary read back from e.g. <m>.summary.json, which
        the reports accept as they accept one from `summarize`."""
        verdicts = lambda name: [Verdict.from_dict(v) for v in data[name]]  # noqa: E731
        return AuditSummary([GroupSummary.from_dict(g) for g in data["groups"]],
                            [Criterion.from_dict(c) for c in data["criteria"]],
                            verdicts("criterion_verdicts"), verdicts("property_verdicts"), verdicts("model_verdicts"))


def summarize(table: pd.DataFrame, criteria=(), radii: list[float] | None = None,
              models: list[str] | None = None) -> AuditSummary:
    """Group statistics per (model, property, norm) and verdicts against `criteria`
    (Criterion objects or config dicts, see saferisk.audit.verdict).

    radii: the radii of the fraction curves (default: `radius_grid`, 0 to each group's max_radius
    in DEFAULT_GRID_POINTS steps);
    the criteria radii are always added. models: models expected in the audit (a model with no
    rows at all, e.g. a failed export, then gets INCONCLUSIVE verdicts instead of vanishing).
    A criterion without `model` applies to every model that has rows for its property (and to
    models without any rows); one naming a model always applies to it.
    """
    criteria = [_with_scale(c, table) for c in parse_criteria(criteria)]
    groups = _group_summaries(table, criteria, radii)
    criterion_verdicts, property_verdicts, model_verdicts = [], [], []
    for model in sorted(set(table["model"]) | set(models or ())):
        verdicts_by_property: dict[str, list[Verdict]] = {}
        for key, verdict in _criterion_verdicts(table.loc[table["model"] == model], criteria, model):
            criterion_verdicts.append(verdict)
            verdicts_by_property.setdefault(key, []).append(verdict)
        for key in sorted(set(verdicts_by_property) | {g.key for g in groups if g.model == model}):
            if key in verdicts_by_property:
                property_verdicts.append(combine(model, key, verdicts_by_property[key], ""))
            else:
                property_verdicts.append(Verdict(model, key, NO_CRITERION, None,
                                                 "no criterion reads this property: measurements only"))
        model_verdicts.append(combine(model, "overall", [v for vs in verdicts_by_property.values() for v in vs],
                                      "no criteria configured"))
    return AuditSummary(groups, criteria, criterion_verdicts, property_verdicts, model_verdicts)


def _group_summaries(table: pd.DataFrame, criteria: list[Criterion], radii: list[float] | None) -> list[GroupSummary]:
    """One GroupSummary per (model, property, norm), its curves on `radii` (or the default grid)
    plus the radii of the criteria that read it."""
    groups = []
    for (model, prop, norm), rows in table.groupby(["model", "property", "norm"], sort=True):
        extra = [c.radius for c in criteria if c.matches(model, prop, norm)]
        if radii is None:
            max_radius = rows["max_radius"].max()
            grid = radius_grid(None if pd.isna(max_radius) else float(max_radius), extra)
        else:
            grid = sorted(set(map(float, radii)) | set(extra))
        groups.append(summarize_group(rows, grid))
    return groups


def _with_scale(criterion: Criterion, table: pd.DataFrame) -> Criterion:
    """The criterion with the unit (table column `scale`) of the rows it reads, when it has none."""
    if criterion.scale is not None or not len(table):
        return criterion
    mask = table["property"] == criterion.property
    if criterion.norm is not None:
        mask &= table["norm"] == criterion.norm
    if criterion.model is not None:
        mask &= table["model"] == criterion.model
    scales = sorted({str(v) for v in table.loc[mask, "scale"] if str(v)})
    return replace(criterion, scale="/".join(scales)) if scales else criterion


def _criterion_verdicts(model_rows: pd.DataFrame, criteria: list[Criterion], model: str
                        ) -> list[tuple[str, Verdict]]:
    """(property key, verdict) of each criterion that applies to `model`, in criteria order; a
    criterion without norm gives one verdict per measured norm."""
    verdicts = []
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
                verdicts.append((group_key(criterion.property, norm),
                                 evaluate_criterion(rows, replace(criterion, norm=norm), model)))
        else:
            verdicts.append((criterion.property_key, evaluate_criterion(matched, criterion, model)))
    return verdicts
