"""Audit reports: Jinja2 templates in reports/ rendered by WeasyPrint to tagged PDF/A-3u, and
the same pages as a self-contained interactive HTML file.

    render_model_report(table, summary, manifest, provenance, out_pdf,
                        templates_dir=DEFAULT_TEMPLATES_DIR, witnesses_root=None,
                        audit_config=None, out_html=None) -> Path
    render_summary_report(table, summary, manifests, provenance, out_pdf,
                          templates_dir=DEFAULT_TEMPLATES_DIR, audit_config=None, out_html=None) -> Path

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
            recorded, shown with readable labels (saferisk.report.provenance): config_sha256
            (of the whole audit config: the same in every report), model_config_sha256 (a
            model's config subset; in the summary {model: hash}), algorithm_hash, git
            {commit, dirty} or git_commit, versions, input_sets {set: {rows, features, sha256}},
            model_source, device, seeds, ...
witnesses_root  directory that witness_ref paths are relative to (e.g. results/radii/<m>/);
            its witnesses are attached as witnesses-<m>.npz, keyed '<witness_ref>/x0|witness'.
audit_config    the resolved config (a model's subset for its report): shown in an appendix
            and attached as the canonical JSON its SHA-256 is taken over.
out_html    where to write the interactive HTML report (same context), if wanted.
model_path  the audited artifact (results/models/<m>/model.onnx): run on the CPU on each shown
            witness to state the outputs and the class decided there; None: not stated.
templates_dir   reports/ (model_report.html.j2, summary_report.html.j2, base.css); it is
            also WeasyPrint's base_url, so the template files are inputs of the render rule.

Identical arguments give byte-identical files. A missing template asset raises ReportError,
an undefined template variable jinja2.UndefinedError.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saferisk.audit.summary import AuditSummary
from saferisk.audit.table import table_csv
from saferisk.report.attachments import ReportAttachment, config_attachment, document_id, witness_archive
from saferisk.report.context import manifest_hashes, model_context, summary_context
from saferisk.report.provenance import record_context, speed_dependence
from saferisk.report.render import (
    DEFAULT_TEMPLATES_DIR, ReportError, parse_audit_date, render_html, write_html, write_pdf,
)

__all__ = ["DEFAULT_TEMPLATES_DIR", "ReportError", "render_model_report", "render_summary_report"]


def _audit_date(provenance: dict):
    if not provenance or provenance.get("audit_date") in (None, ""):
        raise ReportError("provenance lacks 'audit_date' (the date of the audit results; "
                          "reports never take the date from the clock)")
    return parse_audit_date(provenance["audit_date"])


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _model_hash(manifest: dict) -> str:
    hashes = manifest_hashes(manifest)
    return hashes.get("artifact") or next(iter(hashes.values()), "")


def _write(template: str, context: dict, out_pdf, out_html, templates_dir, audit_date, attachments) -> Path:
    """The PDF (context medium 'pdf': the files are attached to it) and, when wanted, the HTML
    page (medium 'html': it says the files are attached to the PDF beside it)."""
    path = write_pdf(render_html(templates_dir, template, dict(context, medium="pdf")), out_pdf, templates_dir,
                     audit_date, attachments)
    if out_html is not None:
        write_html(render_html(templates_dir, template, dict(context, medium="html")), out_html, templates_dir)
    return path


def render_model_report(table: pd.DataFrame, summary: AuditSummary, manifest: dict, provenance: dict,
                        out_pdf: str | Path, templates_dir: str | Path = DEFAULT_TEMPLATES_DIR,
                        witnesses_root: str | Path | None = None, audit_config: dict | None = None,
                        out_html: str | Path | None = None, model_path: str | Path | None = None) -> Path:
    """One model's audit report (cover, executive summary, method, a section per property
    and norm, worst-case inputs, provenance, approval) with its rows of the table attached as
    CSV, its witnesses as .npz and its config subset as JSON."""
    if not manifest.get("name"):
        raise ReportError("model manifest lacks 'name'")
    audit_date = _audit_date(provenance)
    name = str(manifest["name"])
    rows = table.loc[table["model"] == name]
    csv_text = table_csv(rows)
    attachment = f"audit-{_safe_name(name)}.csv"
    attachments = [ReportAttachment(attachment, f"saferisk audit table of {name}: one row per input, property and norm",
                                    csv_text.encode(), "text/csv")]
    archive = witness_archive(rows, witnesses_root)
    if archive is not None and archive.n_witnesses:
        attachments.append(ReportAttachment(
            f"witnesses-{_safe_name(name)}.npz", f"witness arrays of {name}: for each row of {attachment} with a "
            "witness_ref, '<witness_ref>/x0' (the centre searched around) and '<witness_ref>/witness' (the input "
            "that violates the property), flat float64 in the model's input order", archive.data,
            "application/octet-stream"))
    if audit_config:
        attachments.append(config_attachment(f"config-{_safe_name(name)}.json", audit_config,
                                             f"the config entries the results of {name} depend on"))
    context = model_context(table, summary, manifest, provenance, audit_date, witnesses_root, attachment,
                            audit_config=audit_config, model_path=model_path)
    doc_id = document_id(csv_text, provenance.get("config_sha256"), [_model_hash(manifest)])
    context["record"] = record_context(provenance, doc_id, attachments, audit_config,
                                       speed_dependence(rows, summary, [name]), archive.missing if archive else ())
    return _write("model_report.html.j2", context, out_pdf, out_html, templates_dir, audit_date, attachments)


def render_summary_report(table: pd.DataFrame, summary: AuditSummary, manifests: dict[str, dict],
                          provenance: dict, out_pdf: str | Path,
                          templates_dir: str | Path = DEFAULT_TEMPLATES_DIR, audit_config: dict | None = None,
                          out_html: str | Path | None = None) -> Path:
    """The cross-model summary (verdict matrix, certified-fraction curves per property, the
    criteria and their basis, provenance, approval) with the whole table attached as CSV and
    the resolved audit config as JSON."""
    audit_date = _audit_date(provenance)
    attachment = "audit.csv"
    csv_text = table_csv(table)
    attachments = [ReportAttachment(attachment, "saferisk audit table: one row per model, input, property and norm",
                                    csv_text.encode(), "text/csv")]
    if audit_config:
        attachments.append(config_attachment("audit-config.json", audit_config, "the audit config"))
    context = summary_context(table, summary, manifests, provenance, audit_date, attachment, audit_config=audit_config)
    doc_id = document_id(csv_text, provenance.get("config_sha256"), [_model_hash(m) for m in manifests.values()])
    context["record"] = record_context(provenance, doc_id, attachments, audit_config,
                                       speed_dependence(table, summary, sorted(manifests)))
    return _write("summary_report.html.j2", context, out_pdf, out_html, templates_dir, audit_date, attachments)
