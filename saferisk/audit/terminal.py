"""What a finished audit prints on the terminal: the verdict table and where the reports are.

`saferisk audit` prints it after its Snakemake run, plain `snakemake` from the Snakefile's
onsuccess (workflow/rules/common.smk), both with `audit_result_text(workdir, models)`:

    model       property     norm  verdict           certified safe    witnesses       radii in
    digits_mlp  robustness   L∞    PASS (certified)  23/24 at r = 0.02  24/24 within 0.1  input units
    digits_mlp  uncertainty  L∞    NO CRITERION      —                 20/24 within 0.1  input units
    digits_mlp  overall            PASS (certified)

certified safe: inputs whose certified lower bound reaches the radius r of each criterion
that reads the property (none: "—"); witnesses: inputs with a re-checked violating input
within max_radius (or violating the property at the input itself).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from saferisk import layout
from saferisk.audit.summary import AuditSummary, GroupSummary
from saferisk.audit.verdict import PASS, norm_name, unit_text

REPORT_SUFFIXES = ("pdf", "html")


@dataclass(frozen=True)
class VerdictRow:
    """One line of the verdict table, every cell already text."""

    model: str
    property: str
    norm: str
    verdict: str
    certified_safe: str
    witnesses: str
    radii_in: str


HEADERS = VerdictRow("model", "property", "norm", "verdict", "certified safe", "witnesses", "radii in")


def certified_count(group: GroupSummary, radius: float) -> int | None:
    """Inputs certified safe at `radius` (a point of the group's certified curve), None if the
    curve has no such point."""
    for r, fraction in zip(group.radii, group.certified_fraction):
        if math.isclose(r, radius, rel_tol=1e-9, abs_tol=1e-12) and not math.isnan(fraction):
            return round(fraction * group.n_inputs)
    return None


def _certified_text(summary: AuditSummary, group: GroupSummary) -> str:
    parts = []
    for criterion in summary.criteria:
        count = certified_count(group, criterion.radius) if criterion.matches(group.model, group.property,
                                                                                group.norm) else None
        if count is not None:
            parts.append(f"{count}/{group.n_inputs} at r = {criterion.radius:g}")
    return "; ".join(dict.fromkeys(parts)) or "—"


def _witness_text(group: GroupSummary) -> str:
    within = f" within {group.max_radius:g}" if group.max_radius is not None else ""
    return f"{group.n_risks_found}/{group.n_inputs}{within}"


def verdict_rows(summary: AuditSummary) -> list[VerdictRow]:
    """One row per (model, property, norm) with its verdict, then one 'overall' row per model."""
    labels = {(v.model, v.scope): v.label for v in summary.property_verdicts}
    rows = []
    for model in summary.models:
        for group in (g for g in summary.groups if g.model == model):
            rows.append(VerdictRow(model, group.property, norm_name(group.norm),
                                   labels.get((model, group.key), "—"), _certified_text(summary, group),
                                   _witness_text(group), unit_text(group.scale)))
        rows.append(VerdictRow(model, "overall", "", summary.overall(model).label, "", "", ""))
    return rows


def format_table(rows: list[VerdictRow]) -> str:
    """The rows under a header, columns padded to their widest cell (two spaces apart)."""
    cells = [astuple(HEADERS), *(astuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(fields(VerdictRow)))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def verdict_notes(summary: AuditSummary) -> list[str]:
    """Why each criterion that did not pass did not (and why a model without criteria has no verdict)."""
    notes = [f"{v.model} {v.verdict}: {v.reason}" for v in summary.criterion_verdicts if v.verdict != PASS]
    judged = {v.model for v in summary.criterion_verdicts}
    notes += [f"{v.model}: {v.verdict}: {v.reason}" for v in summary.model_verdicts if v.model not in judged]
    return notes


def verdict_table(summary: AuditSummary) -> str:
    """The table, the notes on verdicts that are not PASS, and what the columns count."""
    lines = [format_table(verdict_rows(summary))]
    lines += [f"  {note}" for note in verdict_notes(summary)]
    lines.append("certified safe: inputs whose certified lower bound reaches the radius r of a criterion;\n"
                 "witnesses: inputs with a re-checked violating input within max_radius (or at the input).")
    return "\n".join(lines)


def report_files(workdir: Path, models: list[str]) -> list[Path]:
    """The reports of `models` and the summary report under `workdir` that exist: each PDF,
    then its interactive HTML page."""
    paths = [layout.model_report(m, suffix) for m in models for suffix in REPORT_SUFFIXES]
    paths += [layout.summary_report(suffix) for suffix in REPORT_SUFFIXES]
    return [Path(workdir) / p for p in paths if (Path(workdir) / p).is_file()]


def read_summary(workdir: Path) -> AuditSummary | None:
    """results/tables/summary.json under `workdir`, None before the tables are combined."""
    path = Path(workdir) / layout.audit_summary()
    return AuditSummary.from_dict(json.loads(path.read_text())) if path.is_file() else None


def audit_result_text(workdir: Path, models: list[str], shown_from: Path | None = None) -> str:
    """The verdict table of the audit in `workdir` and the paths of its reports on `models`
    ('' when it has neither); paths shown relative to `shown_from` (e.g. where snakemake was
    started, when its --directory is elsewhere), else as `workdir` / path."""
    def shown(path: Path) -> str:
        return os.path.relpath(path, shown_from) if shown_from is not None else str(path)

    summary = read_summary(workdir)
    parts = []
    if summary is not None:
        parts.append(f"saferisk verdicts ({shown(Path(workdir) / layout.audit_summary())}):\n{verdict_table(summary)}")
    reports = report_files(workdir, models)
    if reports:
        parts.append("saferisk reports:\n" + "\n".join(f"  {shown(path)}" for path in reports))
    return "\n".join(parts)
