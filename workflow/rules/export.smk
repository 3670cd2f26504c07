rule export_model:
    input:
        source=get_model_source,
    output:
        model=layout.model_artifact("{model}"),
        manifest=layout.model_manifest("{model}"),
    log:
        "logs/export_model/{model}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["export"],
        spec=get_model_export_spec,
        source_sha256=get_model_source_sha256,
        factory_code=get_factory_code,
    script:
        "../scripts/export_model.py"
