"""`saferisk report`: render an audit PDF from a tidy table (saferisk.audit) and manifests.

    saferisk report --table results/tables/audit.parquet \
        --manifest results/models/m/manifest.json --out results/reports/m.pdf \
        [--criteria config.yaml] [--provenance provenance.json] [--audit-date 2026-11-20] \
        [--witnesses results/radii/m] [--config config/config.yaml] [--html results/reports/m.html]
        [--templates reports] [--summary]

One --manifest gives that model's report; several (or --summary) the cross-model summary.
--config names the audit config: the report states it (resolved, in an appendix, attached)
and its SHA-256 (the model's subset too), as the workflow's reports do. --html also writes the
interactive HTML page.
The audit date comes from --audit-date, else provenance['audit_date'], else the UTC date the
table file was written (saferisk.steps.provenance.audit_date): never from the clock, so
re-rendering unchanged results is byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

from saferisk.errors import ConfigError, DataError


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="render an audit report PDF from an audit table",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="tidy audit table (.parquet or .csv)")
    parser.add_argument("--manifest", action="append", required=True, default=None,
                        help="model manifest.json (repeat for a summary report)")
    parser.add_argument("--out", required=True, help="output PDF path")
    parser.add_argument("--criteria", help="YAML/JSON file: a list of criteria or a mapping with key 'criteria'")
    parser.add_argument("--provenance", help="JSON/YAML file of provenance facts (audit_date, versions, ...)")
    parser.add_argument("--audit-date", help="ISO 8601 date of the audit results (overrides provenance)")
    parser.add_argument("--witnesses", help="directory that witness_ref paths are relative to")
    parser.add_argument("--config", help="the audit config (YAML) the results were computed with")
    parser.add_argument("--html", help="also write the interactive HTML report here")
    parser.add_argument("--templates", help="report templates directory (default: the shipped reports/)")
    parser.add_argument("--summary", action="store_true", help="render the cross-model summary report")
    parser.set_defaults(func=run)


def _load_mapping(path: str, what: str):
    import yaml

    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{what} file {file} not found")
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} file {file}: {exc}") from None


def run(args) -> int:
    from saferisk.audit import read_table, summarize
    from saferisk.config.criteria import summary_criteria
    from saferisk.report import DEFAULT_TEMPLATES_DIR
    from saferisk.steps.provenance import audit_date
    from saferisk.steps.reports import render

    table = read_table(args.table)
    manifests = {}
    for path in args.manifest:
        manifest = _load_mapping(path, "manifest")
        if not isinstance(manifest, dict):
            raise DataError(f"manifest {path} is not a mapping")
        if not manifest.get("name"):  # an export manifest: named after the table's one model or its folder
            models = sorted(set(table["model"].astype(str))) if "model" in table else []
            manifest = {**manifest, "name": models[0] if len(models) == 1 else Path(path).parent.name}
        manifests[str(manifest["name"])] = manifest
    criteria = []
    if args.criteria:
        loaded = _load_mapping(args.criteria, "criteria")
        criteria = loaded.get("criteria", []) if isinstance(loaded, dict) else loaded
        if not isinstance(criteria, list):
            raise ConfigError(f"criteria file {args.criteria}: expected a list of criteria")
        _check_criteria_match(criteria, table, args.criteria)
    provenance = dict(_load_mapping(args.provenance, "provenance") or {}) if args.provenance else {}
    if args.audit_date:
        provenance["audit_date"] = args.audit_date
    provenance["audit_date"] = audit_date(provenance.get("audit_date"), args.table)
    audit_config = None
    if args.config:
        audit_config = _config_provenance(args.config, sorted(manifests), args.summary or len(manifests) > 1,
                                          provenance)
    summary = summarize(table, summary_criteria(criteria), models=sorted(manifests))
    templates = Path(args.templates) if args.templates else DEFAULT_TEMPLATES_DIR
    out = render(table, summary, manifests, provenance, args.out, templates, args.witnesses, cross_model=args.summary,
                 audit_config=audit_config, out_html=args.html)
    verdicts = {v.model: v.label for v in summary.model_verdicts if v.model in manifests}
    print(json.dumps({"report": str(out), "verdicts": verdicts}, sort_keys=True))
    return 0


def _config_provenance(path: str, models: list[str], cross_model: bool, provenance: dict) -> dict:
    """The resolved config a report shows (a model's subset for its own report; the whole
    config for the summary), its hashes recorded in `provenance`, as the workflow does."""
    from saferisk.config import build_plan

    config = _load_mapping(path, "config")
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} is not a mapping")
    plan = build_plan(config, base=Path.cwd())
    provenance["config_sha256"] = plan.config_sha256()
    if cross_model:
        provenance["model_config_sha256"] = {m: plan.config_sha256(m) for m in models if m in plan.models}
        return plan.model_config()
    if models[0] not in plan.models:
        raise ConfigError(f"config file {path} has no model {models[0]!r}")
    provenance["model_config_sha256"] = plan.config_sha256(models[0])
    return plan.model_config(models[0])


def _check_criteria_match(criteria: list, table, path: str) -> None:
    """A criterion whose property (and norm) the table never measured is a typo, not a pass."""
    from saferisk.audit.verdict import parse_criteria
    from saferisk.config.criteria import check_measured

    measured = {(str(p), str(n)) for p, n in zip(table["property"], table["norm"])} if len(table) else set()
    for i, criterion in enumerate(parse_criteria(criteria)):
        check_measured({"property": criterion.property, "norm": criterion.norm}, measured,
                       f"criteria file {path}: criteria[{i}]", by="the table")
