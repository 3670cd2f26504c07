rule prepare_input_shard:
    input:
        source=get_input_source,
    output:
        layout.input_shard("{inputs}", "{shard}"),
    log:
        "logs/prepare_input_shard/{inputs}/shard-{shard}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["inputs"],
        spec=get_input_load_spec,
        positions=get_shard_positions,
        fingerprint=get_shard_fingerprint,
        seeds=PLAN.config["seeds"],
    script:
        "../scripts/prepare_input_shard.py"


rule describe_input_set:
    input:
        get_input_shards,
    output:
        layout.input_manifest("{inputs}"),
    log:
        "logs/describe_input_set/{inputs}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["inputs"],
    script:
        "../scripts/describe_input_set.py"
