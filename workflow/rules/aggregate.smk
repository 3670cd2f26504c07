rule aggregate_model:
    input:
        get_model_radius_tables,
    output:
        table="results/tables/{model}.parquet",
        csv="results/tables/{model}.csv",
        summary="results/tables/{model}.summary.json",
    log:
        "logs/aggregate_model/{model}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        criteria=PLAN.config["criteria"],
    script:
        "../scripts/aggregate_model.py"


rule combine_tables:
    input:
        get_model_tables,
    output:
        table="results/tables/audit.parquet",
        csv="results/tables/audit.csv",
        summary="results/tables/summary.json",
    log:
        "logs/combine_tables/audit.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        criteria=PLAN.config["criteria"],
        models=list(PLAN.models),
    script:
        "../scripts/combine_tables.py"
