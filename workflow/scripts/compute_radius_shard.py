"""Rule compute_radius_shard: radius brackets of one shard (saferisk.steps.radius.radius_shard)."""
from saferisk.steps.radius import radius_shard
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    radius_shard,
    threads=snakemake.threads,
    model_name=snakemake.wildcards.model,
    model_path=snakemake.input.model,
    manifest_path=snakemake.input.manifest,
    model_spec=snakemake.params.model_spec,
    input_set=snakemake.wildcards.inputs,
    shard_path=snakemake.input.shard,
    reference_paths=list(snakemake.input.get("references", [])),
    property_name=snakemake.wildcards.property,
    property_spec=snakemake.params.property_spec,
    norm=snakemake.wildcards.norm,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    out_path=snakemake.output.table,
    witness_path=snakemake.output.witnesses,
    witness_ref=snakemake.params.witness_ref,
    # what the scheduler granted (the rule's request, --set-resources, a cluster default):
    # certify.memory_mb auto keeps to it less the rest of the job
    mem_mb=getattr(snakemake.resources, "mem_mb", None),
)
