"""Rule report_model: results/reports/<model>.pdf and .html (saferisk.steps.reports.report_model_step)."""
from saferisk.steps.reports import report_model_step
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    report_model_step,
    model_name=snakemake.wildcards.model,
    table_path=snakemake.input.table,
    summary_path=snakemake.input.summary,
    manifest_path=snakemake.input.manifest,
    model_spec=snakemake.params.model_spec,
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
