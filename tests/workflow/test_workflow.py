"""Real Snakemake runs in a tmp dir: what a change recomputes (and what it leaves alone).

One complete run of a tiny audit (two digits MLPs x robustness + uncertainty x 2 shards) is
shared by the cache tests; each test changes one thing, asserts the exact jobs of a dry run,
and puts the thing back (so the next test starts from an up-to-date state again).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_support import (
    ROOT,
    perturb_weights,
    planned_jobs,
    radius_jobs,
    rule_counts,
    setup_workdir,
    snakemake,
    write_digits,
)

pytestmark = pytest.mark.slow


MODULE_TRACE = Path(__file__).resolve().parent / "module_trace"  # its sitecustomize records each job's modules


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """The complete tiny audit; each job's loaded saferisk modules in <wd>/.module-trace/."""
    wd = setup_workdir(tmp_path_factory.mktemp("wf"))
    trace = wd / ".module-trace"
    trace.mkdir()
    path = os.pathsep.join(p for p in (str(MODULE_TRACE), os.environ.get("PYTHONPATH")) if p)
    snakemake(wd, env={"PYTHONPATH": path, "SAFERISK_MODULE_TRACE": str(trace)})
    return wd


def all_radius(models=("mlp_a", "mlp_b"), props=("robustness", "uncertainty"), shards=("0", "1")):
    return {(m, "digits", p, "inf", s) for m in models for p in props for s in shards}


def test_complete_run_outputs(done_run):
    wd = done_run
    for m in ("mlp_a", "mlp_b"):
        assert (wd / f"results/models/{m}/model.onnx").exists()
        assert (wd / f"results/reports/{m}.pdf").read_bytes().startswith(b"%PDF")
        assert (wd / f"logs/export_model/{m}.log").exists()
    assert (wd / "results/reports/summary.pdf").exists()
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert len(table) == 2 * 2 * 4  # models x properties x inputs
    assert set(table["status"]) <= {"ok", "violated_at_input"}
    assert (wd / "logs/compute_radius_shard/mlp_a/digits/robustness-inf/shard-1.log").read_text().count("done ") == 1
    assert (wd / "results/run-metadata.json").exists()


def test_reports_name_the_config_and_the_input_data(done_run):
    """Provenance: the report's config digest is the plan's, its input-set digest the shards'."""
    import json

    from pypdf import PdfReader

    from saferisk.config import build_plan
    from saferisk.steps.inputs import input_set_digest

    wd = done_run
    config = yaml.safe_load((wd / "config/config.yaml").read_text())
    plan = build_plan(config, base=wd)
    digest = input_set_digest(json.loads((wd / "results/inputs/digits/manifest.json").read_text()))
    assert len(json.loads((wd / "results/inputs/digits/manifest.json").read_text())["shards"]) == 2
    for name, model in (("mlp_a.pdf", "mlp_a"), ("mlp_b.pdf", "mlp_b"), ("summary.pdf", None)):
        text = "".join("".join(p.extract_text().split()) for p in PdfReader(wd / "results/reports" / name).pages)
        # the whole config's hash in every report; each model's subset in its report and the summary
        assert f"AuditconfigSHA-256{plan.config_sha256()}" in text, name
        subsets = [model] if model else ["mlp_a", "mlp_b"]
        assert all(plan.config_sha256(m) in text for m in subsets), name
        assert "inputsetdigits4rows×64features,SHA-256" + digest in text, name
        assert "gitcommitnotagitcheckout" in text and str(wd) not in text, name


def test_html_pages_beside_the_pdfs_and_a_commit_reruns_nothing(done_run):
    """Each report has its self-contained HTML page; the git commit is read when a report is
    rendered, so committing the workflow reruns no job; run-metadata names it, no absolute path."""
    wd = done_run
    for name in ("mlp_a", "mlp_b", "summary"):
        page = (wd / f"results/reports/{name}.html").read_text(encoding="utf-8")
        assert "<script>" in page and 'rel="stylesheet"' not in page and str(wd) not in page
    meta = (wd / "results/run-metadata.json").read_text()
    assert '"git"' in meta and str(wd) not in meta
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    try:
        for args in (["init", "-q"], ["add", "Snakefile", "workflow", "reports", "config"],
                     ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "audit"]):
            subprocess.run([git, "-C", str(wd), *args], check=True, capture_output=True)
        assert planned_jobs(wd) == []
    finally:
        shutil.rmtree(wd / ".git", ignore_errors=True)


def test_second_run_does_nothing(done_run):
    assert planned_jobs(done_run) == []
    proc = snakemake(done_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_touching_a_model_file_reruns_nothing(done_run):
    for path in (done_run / "models/mlp_a.onnx", done_run / "data/digits.npz",
                 done_run / "results/models/mlp_a/model.onnx"):
        os.utime(path, (time.time() + 5, time.time() + 5))
    assert planned_jobs(done_run) == []


def test_run_metadata_never_forces_a_rerun(done_run):
    meta = done_run / "results/run-metadata.json"
    meta.write_text('{"host": "elsewhere", "started": "2099-01-01T00:00:00"}\n')
    assert planned_jobs(done_run) == []


def test_changed_weights_rerun_only_that_model(done_run):
    model = done_run / "models/mlp_b.onnx"
    original = model.read_bytes()
    try:
        perturb_weights(model)
        jobs = planned_jobs(done_run)
        assert radius_jobs(jobs) == all_radius(models=("mlp_b",))
        counts = rule_counts(jobs)
        assert counts["export_model"] == 1 and counts["report_model"] == 1
        assert "prepare_input_shard" not in counts
        assert {w["model"] for r, w in jobs if r in ("export_model", "report_model", "aggregate_model")} == {"mlp_b"}
    finally:
        model.write_bytes(original)


def test_changed_property_spec_reruns_only_that_property(done_run):
    path = done_run / "config/config.yaml"
    original = path.read_text()
    try:
        config = yaml.safe_load(original)
        config["properties"]["uncertainty"]["max_radius"] = 0.15
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        jobs = planned_jobs(done_run)
        assert radius_jobs(jobs) == all_radius(props=("uncertainty",))
        assert not {"export_model", "prepare_input_shard"} & set(rule_counts(jobs))
    finally:
        path.write_text(original)


def test_dropping_a_property_from_a_model_does_not_re_export_it(done_run):
    """The export depends on the model's export keys only, not on its property list."""
    path = done_run / "config/config.yaml"
    original = path.read_text()
    try:
        config = yaml.safe_load(original)
        config["models"]["mlp_a"]["properties"] = ["robustness"]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        counts = rule_counts(planned_jobs(done_run))
        assert "export_model" not in counts and "compute_radius_shard" not in counts
        # every report states the whole config's SHA-256: both re-render, only mlp_a re-aggregates
        assert counts.get("aggregate_model") == 1 and counts.get("report_model") == 2
    finally:
        path.write_text(original)


def test_added_input_shard_runs_only_the_new_shard(done_run):
    try:
        write_digits(done_run, 6)  # 4 -> 6 rows: shard-2 is new, shards 0-1 unchanged
        jobs = planned_jobs(done_run)
        assert radius_jobs(jobs) == all_radius(shards=("2",))
        assert [w["shard"] for r, w in jobs if r == "prepare_input_shard"] == ["2"]
    finally:
        write_digits(done_run, 4)


DOWNSTREAM_OF_RADIUS = {"aggregate_model": 2, "combine_tables": 1, "report_model": 2, "report_summary": 1, "all": 1}
STAGE_EDITS = {
    # edited file (package-relative): the jobs a dry run must plan (rule -> count)
    "models/export.py": {"export_model": 2, "compute_radius_shard": 8, **DOWNSTREAM_OF_RADIUS},
    "data/selection.py": {"prepare_input_shard": 2, "describe_input_set": 1, "compute_radius_shard": 8,
                          **DOWNSTREAM_OF_RADIUS},
    "search/gps.py": {"compute_radius_shard": 8, **DOWNSTREAM_OF_RADIUS},
    "bounds/engine.py": {"export_model": 2, "compute_radius_shard": 8, **DOWNSTREAM_OF_RADIUS},
    "steps/radius.py": {"compute_radius_shard": 8, **DOWNSTREAM_OF_RADIUS},
    "audit/verdict.py": {"aggregate_model": 2, "combine_tables": 1, "report_model": 2, "report_summary": 1, "all": 1},
    "report/plots.py": {"report_model": 2, "report_summary": 1, "all": 1},
    "cli.py": {},  # not behind any stage
}


@pytest.mark.parametrize("edited", sorted(STAGE_EDITS))
def test_a_code_edit_reruns_its_stage_and_what_follows(done_run, tmp_path, edited):
    """A copy of saferisk with one edited file shadows the installed one; the dry run plans
    exactly the jobs of that file's stage and the stages after it."""
    import saferisk

    source = Path(saferisk.__file__).resolve().parent  # the package the completed run used
    pkg = tmp_path / "pkg"
    shutil.copytree(source, pkg / "saferisk", ignore=shutil.ignore_patterns("__pycache__"))
    path = pkg / "saferisk" / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    env = {"PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    jobs = planned_jobs(done_run, env=env)
    assert rule_counts(jobs) == STAGE_EDITS[edited]
    if "compute_radius_shard" in STAGE_EDITS[edited]:
        assert radius_jobs(jobs) == all_radius()


def _rule_stages() -> dict[str, str]:
    """Each rule's stage: the CODE[...] digest among its params (workflow/rules/*.smk)."""
    stages = {}
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            found = re.findall(r'code=CODE\["(\w+)"\]', body)
            if found:
                stages[rule] = found[0]
    return stages


def _upstream_rules(wd: Path) -> dict[str, set[str]]:
    """Each rule's ancestors in the workflow's rule graph (snakemake --rulegraph)."""
    dot = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph"], cwd=wd, capture_output=True,
                         text=True, check=True).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    parents: dict[str, set[str]] = {name: set() for name in names.values()}
    for source, target in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        parents[names[target]].add(names[source])

    def ancestors(rule: str) -> set[str]:
        out = set(parents[rule])
        for parent in parents[rule]:
            out |= ancestors(parent)
        return out
    return {rule: ancestors(rule) for rule in parents}


def test_every_module_a_job_loads_is_in_its_stage_digest_or_upstream(done_run):
    """Each job of the complete run loaded only saferisk code that its stage's digest covers, or
    the digest of a stage it reads from (whose rerun reruns it): an edit anywhere in the code a
    job ran reruns that job. (Session 19 found norm_names.py in no digest; the export's
    memory profile ran the bound engine, outside the export digest.)"""
    import saferisk
    from saferisk.steps.provenance import COMMON_SOURCES, STAGE_SOURCES

    package = Path(saferisk.__file__).resolve().parent

    def files(stage: str) -> set[str]:
        out = set()
        for entry in (*COMMON_SOURCES, *STAGE_SOURCES[stage]):
            path = package / entry
            out.update(p.relative_to(package).as_posix() for p in (path.rglob("*.py") if path.is_dir() else [path]))
        return out

    def module_file(name: str) -> str:
        path = package.joinpath(*name.split(".")[1:])
        return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(package).as_posix()

    # ("upstream" covers a module because a rerun upstream reruns the job: not so through ancient() inputs alone)
    ancient = [line.strip() for smk in sorted((ROOT / "workflow/rules").glob("*.smk"))
               for line in smk.read_text().splitlines() if "ancient(" in line and not line.strip().startswith("#")]
    assert len(ancient) == 3, f"a new ancient() input: check it is not a stage's only upstream link: {ancient}"
    stages, upstream = _rule_stages(), _upstream_rules(done_run)
    traces = sorted((done_run / ".module-trace").glob("*.json"))
    traced_rules = {trace.name.rsplit("-", 1)[0] for trace in traces}
    assert traced_rules == set(stages), (traced_rules, stages)  # every stage's rules ran and were traced
    for trace in traces:
        rule = trace.name.rsplit("-", 1)[0]
        covered = files(stages[rule]).union(*(files(stages[r]) for r in upstream[rule] if r in stages))
        loaded = {module_file(name) for name in json.loads(trace.read_text())["modules"]}
        assert len(loaded) > 5, (rule, loaded)
        assert loaded <= covered, f"{rule} ran code in no digest it depends on: {sorted(loaded - covered)}"


def test_only_the_jobs_that_run_the_model_import_torch(done_run):
    """The input, table and summary jobs of the complete run never imported torch (~2 s of each
    job's start; on SLURM, per job): only the jobs that run the model do (the export, the radius
    jobs, the model report's outputs at the witnesses)."""
    loaded = {}
    for trace in sorted((done_run / ".module-trace").glob("*.json")):
        loaded.setdefault(trace.name.rsplit("-", 1)[0], set()).add(json.loads(trace.read_text())["torch"])
    assert {rule for rule, torch_loaded in loaded.items() if True in torch_loaded} == {
        "export_model", "compute_radius_shard", "report_model"}, loaded
    assert {"prepare_input_shard", "describe_input_set", "aggregate_model", "combine_tables",
            "report_summary"} <= set(loaded)


def test_template_change_reruns_only_reports(done_run):
    css = done_run / "reports/base.css"
    original = css.read_text()
    try:
        css.write_text(original + "\n/* a style change */\n")
        counts = rule_counts(planned_jobs(done_run))
        assert counts == {"report_model": 2, "report_summary": 1, "all": 1}
    finally:
        css.write_text(original)


def test_restoring_every_change_leaves_nothing_to_do(done_run):
    """The tests above put back what they changed: content, not mtimes, decides."""
    assert planned_jobs(done_run) == []


def test_lint_and_snakefmt():
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    fmt = subprocess.run([str(Path(sys.executable).parent / "snakefmt"), "--check", "Snakefile", "workflow/rules"],
                         cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_default_config_dry_run_and_slurm_profile():
    """The shipped audit's DAG, locally and with the SLURM profile (no cluster needed)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pytest.importorskip("snakemake_executor_plugin_slurm")
    # --forceall: every job is planned even where a developer's results/ is up to date
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", "-n", "--forceall"], cwd=ROOT,
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "compute_radius_shard" in out and "slurm_account=CHANGE_ME_ACCOUNT" in out
    # the SLURM profile alone decides (with --profile, profiles/default would be loaded and win)
    assert "workflow specific profile profiles/slurm" in out and "profiles/default" not in out
    assert "gpu=1" in out
