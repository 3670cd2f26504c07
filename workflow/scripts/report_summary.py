"""Rule report_summary: results/reports/summary.pdf and .html (saferisk.steps.reports.report_summary_step)."""
from saferisk.steps.reports import report_summary_step
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    report_summary_step,
    table_path=snakemake.input.table,
    summary_path=snakemake.input.summary,
    manifest_paths=dict(zip(snakemake.params.models, snakemake.input.manifests)),
    report_options=snakemake.params.report,
    templates_dir=snakemake.params.templates,
    out_path=snakemake.output.pdf,
    out_html=snakemake.output.html,
    input_manifest_paths=list(snakemake.input.input_manifests),
    config_sha256=snakemake.params.config_sha256,
    model_config_sha256=snakemake.params.model_config_sha256,
    audit_config=snakemake.params.audit_config,
    source_dir=snakemake.params.source_dir,
)
