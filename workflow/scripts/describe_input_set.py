"""Rule describe_input_set: manifest.json of a prepared input set."""
from saferisk.steps.inputs import describe_input_set
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    describe_input_set,
    name=snakemake.wildcards.inputs,
    shard_paths=list(snakemake.input),
    out_path=snakemake.output[0],
)
