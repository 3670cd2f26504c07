"""Rule report_summary: results/reports/summary.pdf (saferisk.steps.reports.report_summary_step)."""
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
    out_path=snakemake.output[0],
    input_manifest_paths=list(snakemake.input.input_manifests),
    config_sha256=snakemake.params.config_sha256,
)
