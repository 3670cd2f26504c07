"""PDF audit reports: Jinja2 templates in reports/ rendered by WeasyPrint to PDF/A-3u.

    render_model_report(table, summary, manifest, provenance, out_pdf,
                        templates_dir=DEFAULT_TEMPLATES_DIR, witnesses_root=None) -> Path
    render_summary_report(table, summary, manifests, provenance, out_pdf,
                          templates_dir=DEFAULT_TEMPLATES_DIR) -> Path

table       the tidy audit table (saferisk.audit.aggregate / read_table); the model report
            uses the rows of manifest["name"] and attaches them as CSV.
summary     an AuditSummary: saferisk.audit.summarize(table, criteria, models=[...]), or the
            same read back from its JSON (results/tables/<m>.summary.json, summary.json) with
            AuditSummary.from_dict; both give byte-identical reports.
manifest    the model's results/models/<m>/manifest.json as a dict (name, sha256 of source and
            artifact, input_shape, domain, output_kind, class_names, decision, accuracy, versions);
            manifests: {model name: manifest}.
provenance  dict; REQUIRED key 'audit_date' (ISO 8601, from the results, e.g. the latest
            radius shard's finish time: never the clock), and whatever else should be
            recorded, shown sorted and flattened: config_sha256, config, git_commit,
            versions {saferisk, torch, snakemake, ...}, device, seeds, data {input set: sha256},
            run_times, ...
witnesses_root  directory that witness_ref paths are relative to (e.g. results/radii/<m>/).
templates_dir   reports/ (model_report.html.j2, summary_report.html.j2, base.css); it is
            also WeasyPrint's base_url, so the template files are inputs of the render rule.

Identical arguments give a byte-identical PDF. A missing template asset raises ReportError,
an undefined template variable jinja2.UndefinedError.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saferisk.audit.summary import AuditSummary
from saferisk.audit.table import table_csv
from saferisk.report.context import model_context, summary_context
from saferisk.report.render import (
    DEFAULT_TEMPLATES_DIR, ReportError, parse_audit_date, render_html, write_pdf,
)

__all__ = ["DEFAULT_TEMPLATES_DIR", "ReportError", "render_model_report", "render_summary_report"]


def _audit_date(provenance: dict):
    if not provenance or provenance.get("audit_date") in (None, ""):
        raise ReportError("provenance lacks 'audit_date' (the date of the audit results; "
                          "reports never take the date from the clock)")
    return parse_audit_date(provenance["audit_date"])


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def render_model_report(table: pd.DataFrame, summary: AuditSummary, manifest: dict, provenance: dict,
                        out_pdf: str | Path, templates_dir: str | Path = DEFAULT_TEMPLATES_DIR,
                        witnesses_root: str | Path | None = None) -> Path:
    """One model's audit report (cover, executive summary, method, a section per property
    and norm, worst-case inputs, provenance) with its rows of the table attached as CSV."""
    if not manifest.get("name"):
        raise ReportError("model manifest lacks 'name'")
    audit_date = _audit_date(provenance)
    rows = table.loc[table["model"] == manifest["name"]]
    attachment = f"audit-{_safe_name(str(manifest['name']))}.csv"
    context = model_context(table, summary, manifest, provenance, audit_date, witnesses_root, attachment)
    html = render_html(templates_dir, "model_report.html.j2", context)
    return write_pdf(html, out_pdf, templates_dir, audit_date,
                     [(attachment, f"saferisk audit table of {manifest['name']}: one row per input, "
                       "property and norm", table_csv(rows))])


def render_summary_report(table: pd.DataFrame, summary: AuditSummary, manifests: dict[str, dict],
                          provenance: dict, out_pdf: str | Path,
                          templates_dir: str | Path = DEFAULT_TEMPLATES_DIR) -> Path:
    """The cross-model summary (verdict matrix, certified-fraction curves per property, the
    criteria and their basis, provenance) with the whole table attached as CSV."""
    audit_date = _audit_date(provenance)
    attachment = "audit.csv"
    context = summary_context(table, summary, manifests, provenance, audit_date, attachment)
    html = render_html(templates_dir, "summary_report.html.j2", context)
    return write_pdf(html, out_pdf, templates_dir, audit_date,
                     [(attachment, "saferisk audit table: one row per model, input, property and norm",
                       table_csv(table))])
