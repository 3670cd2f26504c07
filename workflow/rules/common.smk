# All Python of the workflow: config validation (the schema shipped in the saferisk package),
# the audit plan, wildcard constraints, input functions get_<thing>(wildcards) and targets.
import copy
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

import saferisk.audit.terminal
import saferisk.config
import saferisk.config.profile
import saferisk.config.runtime
import saferisk.config.user_code
import saferisk.errors
import saferisk.io
import saferisk.steps.export
import saferisk.steps.provenance
from saferisk import layout

min_version("9.0")

# `--configfile FILE` REPLACES config/config.yaml (Snakemake would merge the two, mixing the
# default audit's models into yours); `--config key=value` still overrides single keys.
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

# saferisk's own checks first: friendly one-line errors naming the key (and the
# cross-key checks JSON Schema cannot express: names, shapes, labels), before any job runs.
PLAN = saferisk.config.build_plan(config, base=Path.cwd())
for warning in PLAN.warnings:
    print(f"saferisk: warning: {warning}", file=sys.stderr)
validate(config, schema=str(saferisk.config.schema_path()))
ALGORITHM_HASH = saferisk.steps.provenance.algorithm_hash()
# the digest of each stage's code: a param of its rules (editing a stage reruns it and what follows)
CODE = {
    stage: saferisk.steps.provenance.code_digest(stage)
    for stage in saferisk.steps.provenance.STAGE_SOURCES
}
# the workflow's checkout (relative: a moved audit directory stays up to date); its git
# commit is read when a report is rendered, never a param (a commit alone reruns nothing)
SOURCE_DIR = Path(os.path.relpath(workflow.basedir))
REPORTS_DIR = SOURCE_DIR / "reports"
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    model=PLAN.wildcard_pattern("model"),
    inputs=PLAN.wildcard_pattern("inputs"),
    property=PLAN.wildcard_pattern("property"),
    norm="inf|2|1",
    shard=r"\d+",


def get_final_output():
    """Every report, the tidy tables (per model and combined) and the input-set manifests."""
    out = [layout.model_report(m, s) for m in PLAN.models for s in ("pdf", "html")]
    # the per-model tables too: one removed (a failed aggregation, a cleanup) is made again,
    # rather than left missing behind reports that are still present
    out += [
        layout.model_table(m, suffix)
        for m in PLAN.models
        for suffix in ("parquet", "summary.json")
    ]
    out += [layout.summary_report(s) for s in ("pdf", "html")]
    out.append(layout.audit_table("csv"))
    out += [layout.input_manifest(d) for d in PLAN.input_sets]
    return out


def workdir_path(path):
    """A source inside the working directory by its relative path: a moved or copied audit
    directory stays up to date (Snakemake records each job's set of input paths)."""
    path = Path(path)
    return (
        str(path.relative_to(Path.cwd()))
        if path.is_relative_to(Path.cwd())
        else str(path)
    )


def get_model_source(wildcards):
    # ancient(): a touched but unchanged file never reruns; the content hash param does.
    return ancient(workdir_path(PLAN.models[wildcards.model].source))


def get_model_source_sha256(wildcards):
    return PLAN.models[wildcards.model].source_sha256()


def get_model_spec(wildcards):
    return PLAN.config["models"][wildcards.model]


def get_factory_code(wildcards):
    """The digest of the model's factory module (a weights-only model): editing it re-exports."""
    factory = PLAN.config["models"][wildcards.model].get("factory")
    return saferisk.config.user_code.code_digest(factory)


def get_model_export_spec(wildcards):
    return saferisk.steps.export.export_spec(PLAN.config["models"][wildcards.model])


def get_input_source(wildcards):
    source = PLAN.input_sets[wildcards.inputs].info.source
    return [] if source is None else ancient(workdir_path(source))


def get_input_load_spec(wildcards):
    return PLAN.input_sets[wildcards.inputs].load_spec()


def get_shard_positions(wildcards):
    return PLAN.input_sets[wildcards.inputs].shard_positions(int(wildcards.shard))


def get_shard_fingerprint(wildcards):
    return PLAN.input_sets[wildcards.inputs].shard_fingerprint(int(wildcards.shard))


def get_input_shards(wildcards):
    return PLAN.input_sets[wildcards.inputs].shards()


def get_radius_inputs(wildcards):
    """The model artifact, its manifest (small, checksummed) and the shard; invariance jobs
    also read every shard of the set (the differently-labelled references)."""
    files = {
        "model": ancient(layout.model_artifact(wildcards.model)),
        "manifest": layout.model_manifest(wildcards.model),
        "shard": layout.input_shard(wildcards.inputs, wildcards.shard),
    }
    if PLAN.properties[wildcards.property]["kind"] == "invariance":
        files["references"] = PLAN.input_sets[wildcards.inputs].shards()
    return files


def get_radius_model_spec(wildcards):
    spec = PLAN.config["models"][wildcards.model]
    return {k: spec[k] for k in ("decision", "domain", "output_kind")}


def get_witness_ref(wildcards):
    return layout.witness_file_ref(
        wildcards.inputs, wildcards.property, wildcards.norm, wildcards.shard
    )


def get_property_spec(wildcards):
    return PLAN.property_spec(wildcards.property)


def get_property_code(wildcards):
    """The digest of a custom property's function module: editing it reruns its radius jobs."""
    spec = PLAN.properties[wildcards.property]
    if spec["kind"] != "custom":
        return None
    return saferisk.config.user_code.code_digest(spec["params"].get("function"))


def get_radius_runtime(wildcards, attempt):
    """Minutes: generous for a shard of the configured size, doubled per retry."""
    return 30 * attempt


def get_radius_mem_mb(wildcards, input, attempt):
    """MB: certify.memory_mb (auto: the model's need, read from its manifest, up to a ceiling)
    plus the rest of the job, doubled per retry. Before the export has written the manifest
    (a dry run) auto counts the ceiling; Snakemake evaluates it again once the job is ready.
    """
    return saferisk.config.runtime.radius_job_mem_mb(
        PLAN.property_spec(wildcards.property), attempt, manifest=input.manifest
    )


def get_model_radius_tables(wildcards):
    return [job.output for job in PLAN.radius_jobs() if job.model == wildcards.model]


def get_model_witnesses(wildcards):
    return [job.witnesses for job in PLAN.radius_jobs() if job.model == wildcards.model]


def get_model_manifests(wildcards):
    return [layout.model_manifest(m) for m in PLAN.models]


def get_model_input_manifests(wildcards):
    """The manifests (row count, shard hashes) of the input sets a report covers."""
    model = getattr(wildcards, "model", None)
    names = PLAN.models[model].input_sets if model else PLAN.input_sets
    return [layout.input_manifest(d) for d in sorted(names)]


def get_config_sha256(wildcards):
    """The SHA-256 of a model's config subset (what its results depend on), else of the whole config."""
    return PLAN.config_sha256(getattr(wildcards, "model", None))


def get_audit_config(wildcards):
    """The resolved config a report states: a model's subset (PLAN.model_config), else all of it."""
    return PLAN.model_config(getattr(wildcards, "model", None))


def get_model_tables(wildcards):
    return [layout.model_table(m) for m in PLAN.models]


def get_report_assets(wildcards):
    """Templates, CSS and fonts: inputs of the report rules, so editing them reruns reports."""
    return sorted(str(p) for p in REPORTS_DIR.rglob("*") if p.is_file())


def warn_profile_placeholders():
    """Before any job: resource values a site profile still leaves CHANGE_ME_... (profiles/slurm)."""
    jobs = [
        (job.rule.name, dict(job.resources.items()))
        for job in workflow.dag.needrun_jobs()
    ]
    for warning in saferisk.config.profile.job_resource_warnings(jobs):
        print(f"saferisk: warning: {warning}", file=sys.stderr)


def check_results_writable():
    """Before any job: a read-only or full results/ is one clear line, not a traceback from
    inside Snakemake's job preparation."""
    try:
        saferisk.io.check_writable(layout.RESULTS)
    except saferisk.errors.SaferiskError as exc:
        sys.exit(f"saferisk: error: {exc}")


def write_run_metadata():
    """The run metadata file (layout.run_metadata): start time, host, targets; no rule reads it."""
    saferisk.steps.provenance.write_run_metadata(
        layout.run_metadata(),
        {"plan": PLAN.summary(), "config_sha256": PLAN.config_sha256()},
        source_dir=SOURCE_DIR,
    )


def print_audit_result():
    """After a successful run: the verdict table and the reports' paths (printed once, here),
    the paths as seen from where snakemake was started (also with --directory)."""
    text = saferisk.audit.terminal.audit_result_text(
        Path.cwd(), list(PLAN.models), shown_from=Path(workflow.rundir)
    )
    if text:
        print(text)
