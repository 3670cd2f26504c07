"""The steps of an audit, one function each, called by the workflow scripts and the CLI alike.

    export.export_model_step     source model  -> results/models/<m>/{model.onnx, manifest.json}
    inputs.prepare_input_shard   input set     -> results/inputs/<d>/shard-<k>.npz
    inputs.describe_input_set    shards        -> results/inputs/<d>/manifest.json
    radius.radius_shard          model x shard -> results/radii/<m>/<d>/<p>-<norm>/shard-<k>.parquet (+ witnesses)
    tables.aggregate_model       shards of <m> -> results/tables/<m>.{parquet,csv,summary.json}
    tables.combine_tables        model tables  -> results/tables/audit.{parquet,csv}, summary.json
    reports.report_model_step / reports.report_summary_step -> results/reports/<m>.pdf, summary.pdf
    provenance                   audit date, versions, algorithm hash, run metadata

Every step takes plain values (paths, config entries) or the spec objects the CLI builds
from its flags, and writes its outputs atomically; paths come from saferisk.layout. Nothing
here imports Snakemake; `runner.run_step` is the wrapper the workflow scripts call.
"""
