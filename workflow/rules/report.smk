# The git commit a report names is read when it is rendered (SOURCE_DIR), not a param: a
# commit alone reruns no report. config_sha256 (the whole config) is a param, so every report
# names the same audit config; audit_config is what the report shows (a model's subset).
rule report_model:
    input:
        table=layout.model_table("{model}"),
        summary=layout.model_table("{model}", "summary.json"),
        manifest=layout.model_manifest("{model}"),
        model=layout.model_artifact("{model}"),  # runs the witnesses for their decisions
        input_manifests=get_model_input_manifests,
        witnesses=get_model_witnesses,
        assets=get_report_assets,
    output:
        pdf=report(
            layout.model_report("{model}"),
            category="Audit reports",
            labels={"report": "{model}", "format": "PDF"},
        ),
        html=report(
            layout.model_report("{model}", "html"),
            category="Audit reports",
            labels={"report": "{model}", "format": "HTML"},
        ),
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
        config_sha256=PLAN.config_sha256(),
        model_config_sha256=get_config_sha256,
        audit_config=get_audit_config,
        templates=str(REPORTS_DIR),
        source_dir=str(SOURCE_DIR),
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
        pdf=report(
            layout.summary_report(),
            category="Audit reports",
            labels={"report": "summary", "format": "PDF"},
        ),
        html=report(
            layout.summary_report("html"),
            category="Audit reports",
            labels={"report": "summary", "format": "HTML"},
        ),
    log:
        "logs/report_summary/summary.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["reports"],
        report=PLAN.config["report"],
        config_sha256=PLAN.config_sha256(),
        model_config_sha256={m: PLAN.config_sha256(m) for m in PLAN.models},
        audit_config=PLAN.model_config(),
        templates=str(REPORTS_DIR),
        source_dir=str(SOURCE_DIR),
        models=list(PLAN.models),
    script:
        "../scripts/report_summary.py"
