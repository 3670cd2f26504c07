rule compute_radius_shard:
    input:
        unpack(get_radius_inputs),
    output:
        table=layout.radius_table(
            "{model}", "{inputs}", "{property}", "{norm}", "{shard}"
        ),
        witnesses=layout.radius_witnesses(
            "{model}", "{inputs}", "{property}", "{norm}", "{shard}"
        ),
    log:
        layout.radius_log("{model}", "{inputs}", "{property}", "{norm}", "{shard}"),
    benchmark:
        layout.benchmark(
            "compute_radius_shard", "{model}/{inputs}/{property}-{norm}/shard-{shard}"
        )
    conda:
        CONDA_ENV
    threads: 1
    resources:
        gpu=1,
        runtime=get_radius_runtime,
        mem_mb=get_radius_mem_mb,
    params:
        code=CODE["radius"],
        model_spec=get_radius_model_spec,
        property_spec=get_property_spec,
        property_code=get_property_code,
        seed=PLAN.config["seeds"]["search"],
        device=PLAN.config["device"],
        algorithm_hash=ALGORITHM_HASH,
        witness_ref=get_witness_ref,
    script:
        "../scripts/compute_radius_shard.py"
