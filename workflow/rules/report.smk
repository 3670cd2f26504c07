rule report_model:
    input:
        table="results/tables/{model}.parquet",
        summary="results/tables/{model}.summary.json",
        manifest="results/models/{model}/manifest.json",
        input_manifests=get_model_input_manifests,
        witnesses=get_model_witnesses,
        assets=get_report_assets,
    output:
        "results/reports/{model}.pdf",
    log:
        "logs/report_model/{model}.log",
    benchmark:
        "results/benchmarks/report_model/{model}.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        report=PLAN.config["report"],
        model_spec=get_model_spec,
        criteria=PLAN.config["criteria"],
        config_sha256=get_config_sha256,
        templates=str(REPORTS_DIR),
    script:
        "../scripts/report_model.py"


rule report_summary:
    input:
        table="results/tables/audit.parquet",
        summary="results/tables/summary.json",
        manifests=get_model_manifests,
        input_manifests=get_model_input_manifests,
        assets=get_report_assets,
    output:
        "results/reports/summary.pdf",
    log:
        "logs/report_summary/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        report=PLAN.config["report"],
        criteria=PLAN.config["criteria"],
        config_sha256=get_config_sha256,
        templates=str(REPORTS_DIR),
        models=list(PLAN.models),
    script:
        "../scripts/report_summary.py"
