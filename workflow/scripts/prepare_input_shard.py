"""Rule prepare_input_shard: one shard .npz of an input set (saferisk.steps.inputs.prepare_input_shard)."""
from saferisk.steps.inputs import prepare_input_shard
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    prepare_input_shard,
    name=snakemake.wildcards.inputs,
    spec=snakemake.params.spec,
    seeds=snakemake.params.seeds,
    positions=snakemake.params.positions,
    fingerprint=snakemake.params.fingerprint,
    out_path=snakemake.output[0],
)
