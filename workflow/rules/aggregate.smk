rule aggregate_model:
    input:
        get_model_radius_tables,
    output:
        table=layout.model_table("{model}"),
        csv=layout.model_table("{model}", "csv"),
        summary=layout.model_table("{model}", "summary.json"),
        timings=layout.model_table("{model}", "timings.csv"),
    log:
        "logs/aggregate_model/{model}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["tables"],
        criteria=PLAN.config["criteria"],
    script:
        "../scripts/aggregate_model.py"


rule combine_tables:
    input:
        get_model_tables,
    output:
        table=layout.audit_table(),
        csv=layout.audit_table("csv"),
        summary=layout.audit_summary(),
    log:
        "logs/combine_tables/audit.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        code=CODE["tables"],
        criteria=PLAN.config["criteria"],
        models=list(PLAN.models),
    script:
        "../scripts/combine_tables.py"
