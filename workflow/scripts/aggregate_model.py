"""Rule aggregate_model: one model's tidy table and summary (saferisk.steps.tables.aggregate_model)."""
from pathlib import Path

from saferisk.steps.tables import aggregate_model
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    aggregate_model,
    model_name=snakemake.wildcards.model,
    shard_paths=list(snakemake.input),
    criteria=snakemake.params.criteria,
    out_dir=str(Path(snakemake.output.table).parent),
)
