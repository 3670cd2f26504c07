"""Report steps: a model's PDF and the cross-model summary PDF, from the tables and the
summaries the table steps wrote (never recomputed here). `saferisk report` renders through
`render` too, with the summary it computes from a table and a criteria file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from saferisk import layout
from saferisk.steps.provenance import input_sets_provenance, report_provenance

log = logging.getLogger("saferisk.steps")


def read_summary(path: str | Path):
    """An AuditSummary written by a table step."""
    from saferisk.audit.summary import AuditSummary

    return AuditSummary.from_dict(json.loads(Path(path).read_text()))


def model_manifest(model_name: str, manifest_path: str, model_spec: dict | None = None) -> dict:
    """The export manifest named after its model (class names from the config when the
    artifact has none)."""
    manifest = json.loads(Path(manifest_path).read_text())
    manifest["name"] = model_name
    if model_spec and model_spec.get("class_names") and not manifest.get("class_names"):
        manifest["class_names"] = model_spec["class_names"]
    return manifest


def render(table, summary, manifests: dict[str, dict], provenance: dict, out_path: str, templates_dir,
           witnesses_root: str | None = None, cross_model: bool = False, audit_config: dict | None = None,
           out_html: str | None = None, model_path: str | None = None) -> str:
    """One report PDF (and its HTML page when out_html): the summary report over `manifests`
    when cross_model (or several), else the model report of the single manifest."""
    from saferisk import report

    if cross_model or len(manifests) > 1:
        path = report.render_summary_report(table, summary, manifests, provenance, out_path, templates_dir=templates_dir,
                                            audit_config=audit_config, out_html=out_html)
    else:
        manifest = next(iter(manifests.values()))
        path = report.render_model_report(table, summary, manifest, provenance, out_path, templates_dir=templates_dir,
                                          witnesses_root=witnesses_root, audit_config=audit_config, out_html=out_html,
                                          model_path=model_path)
    log.info("report %s%s", path, f" and {out_html}" if out_html else "")
    return str(path)


def report_model_step(*, model_name: str, table_path: str, summary_path: str, manifest_path: str,
                      model_spec: dict, report_options: dict, templates_dir: str, out_path: str,
                      input_manifest_paths: Sequence[str] = (), config_sha256: str | None = None,
                      model_config_sha256: str | None = None, audit_config: dict | None = None,
                      out_html: str | None = None, source_dir: str = ".") -> str:
    """results/reports/<m>.pdf (and .html) from the model's table, summary and manifest.
    config_sha256: of the whole audit config; model_config_sha256 and audit_config: the
    model's config subset; source_dir: the checkout whose git commit the report names."""
    from saferisk.audit.table import read_table

    provenance = report_provenance(report_options, table_path, {
        "model_source": model_spec.get("source"), "config_sha256": config_sha256,
        "model_config_sha256": model_config_sha256, "input_sets": input_sets_provenance(input_manifest_paths)},
        source_dir=source_dir)
    manifest = model_manifest(model_name, manifest_path, model_spec)
    artifact = Path(manifest_path).parent / str(manifest.get("artifact") or "model.onnx")
    return render(read_table(table_path), read_summary(summary_path), {model_name: manifest}, provenance, out_path,
                  templates_dir, witnesses_root=layout.witness_root(model_name), audit_config=audit_config,
                  out_html=out_html, model_path=str(artifact) if artifact.is_file() else None)


def report_summary_step(*, table_path: str, summary_path: str, manifest_paths: dict[str, str],
                        report_options: dict, templates_dir: str, out_path: str,
                        input_manifest_paths: Sequence[str] = (), config_sha256: str | None = None,
                        model_config_sha256: dict[str, str] | None = None, audit_config: dict | None = None,
                        out_html: str | None = None, source_dir: str = ".") -> str:
    """results/reports/summary.pdf (and .html) over every model; model_config_sha256: each
    model's config subset hash (the one its own report states)."""
    from saferisk.audit.table import read_table

    provenance = report_provenance(report_options, table_path, {
        "config_sha256": config_sha256, "model_config_sha256": model_config_sha256,
        "input_sets": input_sets_provenance(input_manifest_paths)}, source_dir=source_dir)
    manifests = {m: model_manifest(m, p) for m, p in manifest_paths.items()}
    return render(read_table(table_path), read_summary(summary_path), manifests, provenance, out_path,
                  templates_dir, cross_model=True, audit_config=audit_config, out_html=out_html)
