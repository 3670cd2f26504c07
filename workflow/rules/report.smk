rule report_model:
    input:
        table=layout.model_table("{model}"),
        summary=layout.model_table("{model}", "summary.json"),
        manifest=layout.model_manifest("{model}"),
        input_manifests=get_model_input_manifests,
        witnesses=get_model_witnesses,
        assets=get_report_assets,
    output:
        layout.model_report("{model}"),
    log:
        "logs/report_model/{model}.log",
    benchmark:
        layout.benchmark("report_model", "{model}")
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["reports"],
        report=PLAN.config["report"],
        model_spec=get_model_spec,
        config_sha256=get_config_sha256,
        templates=str(REPORTS_DIR),
    script:
        "../scripts/report_model.py"


rule report_summary:
    input:
        table=layout.audit_table(),
        summary=layout.audit_summary(),
        manifests=get_model_manifests,
        input_manifests=get_model_input_manifests,
        assets=get_report_assets,
    output:
        layout.summary_report(),
    log:
        "logs/report_summary/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["reports"],
        report=PLAN.config["report"],
        config_sha256=get_config_sha256,
        templates=str(REPORTS_DIR),
        models=list(PLAN.models),
    script:
        "../scripts/report_summary.py"
