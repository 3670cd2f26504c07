"""Rule combine_tables: results/tables/audit.{parquet,csv} + summary.json."""
from pathlib import Path

from saferisk.steps.tables import combine_tables
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    combine_tables,
    model_tables=list(snakemake.input),
    criteria=snakemake.params.criteria,
    models=snakemake.params.models,
    out_dir=str(Path(snakemake.output.table).parent),
)
