rule report_model:
    input:
        table="results/tables/{model}.parquet",
        summary="results/tables/{model}.summary.json",
        manifest="results/models/{model}/manifest.json",
        witnesses=get_model_witnesses,
        assets=get_report_assets,
    output:
        "results/reports/{model}.pdf",
    log:
        "logs/report_model/{model}.log",
    params:
        report=PLAN.config["report"],
        model_spec=get_model_spec,
        criteria=PLAN.config["criteria"],
        templates=str(REPORTS_DIR),
    localrule: True
    benchmark:
        "results/benchmarks/report_model/{model}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/report_model.py"


rule report_summary:
    input:
        table="results/tables/audit.parquet",
        summary="results/tables/summary.json",
        manifests=get_model_manifests,
        assets=get_report_assets,
    output:
        "results/reports/summary.pdf",
    log:
        "logs/report_summary/summary.log",
    params:
        report=PLAN.config["report"],
        criteria=PLAN.config["criteria"],
        templates=str(REPORTS_DIR),
        models=list(PLAN.models),
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/report_summary.py"
