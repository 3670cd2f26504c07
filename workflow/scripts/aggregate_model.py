"""Rule aggregate_model: one model's tidy table and summary (saferisk.pipeline.aggregate_model)."""
from pathlib import Path

from saferisk.pipeline import aggregate_model, run_step

run_step(
    snakemake.log[0],
    aggregate_model,
    model_name=snakemake.wildcards.model,
    shard_paths=list(snakemake.input),
    criteria=snakemake.params.criteria,
    out_dir=str(Path(snakemake.output.table).parent),
)
