# saferisk audit workflow: `snakemake` audits every configured model for every configured
# property and writes results/reports/*.pdf. Configuration: config/config.yaml (documented
# in config/README.md, checked by `saferisk validate-config`). Profiles: profiles/default
# (found automatically), profiles/slurm (`snakemake --workflow-profile profiles/slurm`, docs/cluster-guide.md).


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/radius.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


onstart:
    check_results_writable()
    warn_profile_placeholders()
    write_run_metadata()


onsuccess:
    print_audit_result()


rule all:
    default_target: True
    input:
        get_final_output(),
    localrule: True
