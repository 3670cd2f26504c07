rule export_model:
    input:
        source=get_model_source,
    output:
        model="results/models/{model}/model.onnx",
        manifest="results/models/{model}/manifest.json",
    log:
        "logs/export_model/{model}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        spec=get_model_export_spec,
        source_sha256=get_model_source_sha256,
    script:
        "../scripts/export_model.py"
