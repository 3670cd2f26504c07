rule compute_radius_shard:
    input:
        unpack(get_radius_inputs),
    output:
        table="results/radii/{model}/{inputs}/{property}-{norm}/shard-{shard}.parquet",
        witnesses="results/radii/{model}/{inputs}/{property}-{norm}/shard-{shard}.witnesses.npz",
    log:
        "logs/compute_radius_shard/{model}/{inputs}/{property}-{norm}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/compute_radius_shard/{model}/{inputs}/{property}-{norm}/shard-{shard}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=1,
        runtime=get_radius_runtime,
        mem_mb=get_radius_mem_mb,
    params:
        model_spec=get_radius_model_spec,
        property_spec=get_property_spec,
        seed=PLAN.config["seeds"]["search"],
        device=PLAN.config["device"],
        algorithm_hash=ALGORITHM_HASH,
    script:
        "../scripts/compute_radius_shard.py"
