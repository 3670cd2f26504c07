"""Where every result lives: the one owner of the results/ layout.

The workflow rules, the plan, the steps and the reports build paths only with these
functions. Called with Snakemake wildcards ("{model}", ...) they give the rules' patterns:

    results/models/<m>/model.onnx, manifest.json            export
    results/inputs/<d>/shard-<k>.npz, manifest.json          input shards
    results/radii/<m>/<d>/<p>-<norm>/shard-<k>.parquet       radius jobs (+ .witnesses.npz)
    results/tables/<m>.{parquet,csv,summary.json}            per-model tables
    results/tables/audit.{parquet,csv}, summary.json          every model
    results/reports/<m>.{pdf,html}, summary.{pdf,html}       reports (PDF, interactive HTML)
    results/run-metadata.json                                 written at start, read by no rule
    logs/compute_radius_shard/<m>/<d>/<p>-<norm>/shard-<k>.log  a radius job's log ([i/n] per input)

A witness is referenced in the tables as '<d>/<p>-<norm>/shard-<k>.witnesses.npz#<key>',
relative to the model's witness root results/radii/<m>.

All of these are relative to the workflow's working directory: the repository root for plain
`snakemake`, audits/<name>/ for `saferisk audit` (its own config/config.yaml, results/, logs/
and .snakemake/, so a scratch audit never touches the default audit's files).
"""

from __future__ import annotations

RESULTS = "results"
AUDITS = "audits"


def model_artifact(model: str) -> str:
    return f"{RESULTS}/models/{model}/model.onnx"


def model_manifest(model: str) -> str:
    return f"{RESULTS}/models/{model}/manifest.json"


def input_shard(inputs: str, shard) -> str:
    return f"{RESULTS}/inputs/{inputs}/shard-{shard}.npz"


def input_manifest(inputs: str) -> str:
    return f"{RESULTS}/inputs/{inputs}/manifest.json"


def witness_root(model: str) -> str:
    """The directory witness references of `model` are relative to."""
    return f"{RESULTS}/radii/{model}"


def _radius_stem(inputs: str, prop: str, norm: str, shard) -> str:
    return f"{inputs}/{prop}-{norm}/shard-{shard}"


def radius_table(model: str, inputs: str, prop: str, norm: str, shard) -> str:
    return f"{witness_root(model)}/{_radius_stem(inputs, prop, norm, shard)}.parquet"


def radius_witnesses(model: str, inputs: str, prop: str, norm: str, shard) -> str:
    return f"{witness_root(model)}/{_radius_stem(inputs, prop, norm, shard)}.witnesses.npz"


def witness_file_ref(inputs: str, prop: str, norm: str, shard) -> str:
    """A radius job's witness file, relative to the model's witness root."""
    return f"{_radius_stem(inputs, prop, norm, shard)}.witnesses.npz"


def model_table(model: str, suffix: str = "parquet") -> str:
    """results/tables/<m>.<suffix> (parquet, csv or summary.json)."""
    return f"{RESULTS}/tables/{model}.{suffix}"


def audit_table(suffix: str = "parquet") -> str:
    return f"{RESULTS}/tables/audit.{suffix}"


def audit_summary() -> str:
    return f"{RESULTS}/tables/summary.json"


def tables_dir() -> str:
    return f"{RESULTS}/tables"


def model_report(model: str, suffix: str = "pdf") -> str:
    """results/reports/<m>.<suffix>: the PDF, or the interactive page (html)."""
    return f"{RESULTS}/reports/{model}.{suffix}"


def summary_report(suffix: str = "pdf") -> str:
    return f"{RESULTS}/reports/summary.{suffix}"


def run_metadata() -> str:
    return f"{RESULTS}/run-metadata.json"


def radius_log(model: str, inputs: str, prop: str, norm: str, shard) -> str:
    """A radius job's log: one `[i/n] input ...` line per finished input (`saferisk audit`'s progress)."""
    return f"logs/compute_radius_shard/{model}/{_radius_stem(inputs, prop, norm, shard)}.log"


def scratch_audit(name: str) -> str:
    """The working directory of `saferisk audit --name <name>`, relative to where it runs."""
    return f"{AUDITS}/{name}"


def benchmark(rule: str, stem: str) -> str:
    """Snakemake's per-job benchmark file of `rule`."""
    return f"{RESULTS}/benchmarks/{rule}/{stem}.tsv"
