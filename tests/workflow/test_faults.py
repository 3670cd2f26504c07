"""Fault injection: a disturbed run, then the recovery a user (or the nightly script) does,
must end with the same evidence as an undisturbed run, and a fault is one clear line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workflow_support import SNAKEMAKE, perturb_weights, planned_jobs, setup_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow


N_ROWS = 1  # one input, one radius job: every fault below still meets a running radius job


def _config():
    config = tiny_config(models=("mlp_a",), n_rows=N_ROWS, shard_size=1)
    del config["properties"]["uncertainty"]
    return config


def _workdir(dest: Path) -> Path:
    """A fresh copy of the workflow with the fault tests' config and data, nothing run yet."""
    return setup_workdir(dest, _config(), n_rows=N_ROWS)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> Path:
    wd = _workdir(tmp_path_factory.mktemp("clean") / "wf")
    snakemake(wd)
    return wd


def _jobs_of(wd: Path) -> list[int]:
    """PIDs of the job scripts a snakemake run started in `wd`."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd") == str(wd) and b".snakemake/scripts" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


EVIDENCE_TABLES = ("tables/audit.parquet", "tables/audit.csv", "tables/mlp_a.parquet", "tables/mlp_a.summary.json")


def _same_tables(wd: Path, reference: Path) -> None:
    for rel in EVIDENCE_TABLES:
        assert (wd / "results" / rel).read_bytes() == (reference / "results" / rel).read_bytes(), rel


def _copy_of(finished: Path, dest: Path) -> Path:
    """A finished audit moved elsewhere, times and Snakemake's records kept: up to date there."""
    shutil.copytree(finished, dest, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    return dest


def _wait_for_radius_job(wd: Path, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in _jobs_of(wd):
            try:
                if "compute_radius_shard" in (Path("/proc") / str(pid) / "cmdline").read_text(errors="replace"):
                    return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no radius job started before the deadline")


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_nightly_recovers_from_a_kill_9_of_snakemake_with_orphaned_jobs(tmp_path, undisturbed):
    wd = _workdir(tmp_path / "wf")
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_radius_job(wd)
    os.kill(proc.pid, signal.SIGKILL)  # snakemake only: its running job is orphaned
    proc.wait()
    orphans = _jobs_of(wd)
    assert orphans, "no job was running when snakemake was killed"
    assert (wd / ".snakemake" / "locks").is_dir() and any((wd / ".snakemake" / "locks").iterdir())
    env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake")}
    night = subprocess.run(["bash", "workflow/nightly.sh", "profiles/default"], cwd=wd, env=env,
                           capture_output=True, text=True, timeout=600)
    log = (wd / "logs" / "nightly" / "latest.log").read_text()
    assert night.returncode == 0, log[-4000:]
    assert f"ending orphaned jobs of a killed run: pid {orphans[0]}" in log
    assert not _jobs_of(wd)
    _same_tables(wd, undisturbed)


def test_a_live_run_is_never_unlocked_by_the_nightly_script(tmp_path):
    wd = _workdir(tmp_path / "wf")
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        locks = wd / ".snakemake" / "locks"
        deadline = time.time() + 180  # the run holds its lock once its DAG is built (slow under load)
        while time.time() < deadline and not (locks.is_dir() and any(locks.iterdir())):
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before the nightly script could meet it"
        env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake")}
        night = subprocess.run(["bash", "workflow/nightly.sh", "profiles/default"], cwd=wd, env=env,
                               capture_output=True, text=True, timeout=120)
        assert night.returncode == 0
        skipped = (wd / "logs" / "nightly" / "skipped.log").read_text()
        assert f"a snakemake run is live in {wd} (pid {proc.pid}" in skipped
        assert proc.poll() is None  # left alone: still running, its lock untouched
        assert any((wd / ".snakemake" / "locks").iterdir())
        assert not (wd / "logs" / "nightly" / "latest.log").exists()  # no run was started beside it
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")


needs_mount = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (root)")


@needs_mount
@pytest.mark.parametrize("fault, options, reason", [
    ("full disk", "size=64k", "No space left on device"),
    ("read-only disk", "ro,size=1m", "Read-only file system"),
])
def test_a_disk_that_refuses_writes_is_one_clear_line_and_the_rerun_trusts_nothing_half_written(
        tmp_path, undisturbed, fault, options, reason):
    wd = _workdir(tmp_path / "wf")
    results = wd / "results"  # the whole results/ on its own (small or read-only) filesystem
    _mount_tmpfs(results, options)
    try:
        proc = snakemake(wd, check=False)
    finally:
        subprocess.run(["umount", str(results)], check=True)
    assert proc.returncode != 0, fault
    # one line naming the path: from the job that hit the full disk, or from the check before any
    # job for a read-only one (Snakemake's own job preparation would die in a traceback there)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("saferisk: error: cannot write results")]
    assert lines and reason in lines[0], proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in (wd / "logs").rglob("*.log"))
    assert "Traceback" not in proc.stderr + logs
    # the disk is freed (the mount is gone): the rerun makes the same evidence as an undisturbed run
    snakemake(wd, "--rerun-incomplete")
    _same_tables(wd, undisturbed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_folder_is_one_clear_line(tmp_path):
    wd = _workdir(tmp_path / "wf")
    snakemake(wd, "results/inputs/digits/manifest.json")
    (wd / "results" / "inputs" / "digits").chmod(0o555)
    try:
        proc = snakemake(wd, "--forceall", "results/inputs/digits/manifest.json", check=False)
    finally:
        (wd / "results" / "inputs" / "digits").chmod(0o755)
    assert proc.returncode != 0
    logs = list((wd / "logs").rglob("*.log"))
    text = "".join(p.read_text() for p in logs)
    assert "saferisk: error: cannot write" in proc.stderr + text and "Traceback" not in text


def test_a_corrupted_radius_shard_is_one_clear_line_and_its_rerun_restores_the_table(tmp_path, undisturbed):
    wd = _copy_of(undisturbed, tmp_path / "wf")
    shard = wd / "results/radii/mlp_a/digits/robustness-inf/shard-0.parquet"
    shard.write_bytes(b"not a parquet file")  # a disk error, a half-copied backup, an edit by hand
    proc = snakemake(wd, check=False)
    assert proc.returncode != 0
    log = (wd / "logs/aggregate_model/mlp_a.log").read_text()
    assert f"error: {shard.relative_to(wd)}: cannot read radius shard" in log and "Traceback" not in log
    assert "saferisk: error: results/radii/mlp_a/digits/robustness-inf/shard-0.parquet" in proc.stderr
    shard.unlink()  # the recovery: remove what is broken, run again
    snakemake(wd)
    _same_tables(wd, undisturbed)


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_a_job_killed_mid_run_leaves_no_report_and_its_rerun_restores_the_table(tmp_path, undisturbed):
    wd = _workdir(tmp_path / "wf")
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=wd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    os.kill(_wait_for_radius_job(wd), signal.SIGKILL)  # one job dies (the OOM killer, a node failure)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "Error in rule compute_radius_shard" in out, out[-3000:]
    # no report shows a number for the failed shard: neither the model's nor the summary exists
    assert not list((wd / "results").rglob("*.pdf"))
    assert not (wd / "results/tables/mlp_a.parquet").exists()
    snakemake(wd)  # the recovery is a plain rerun: snakemake ended normally, no lock is left
    _same_tables(wd, undisturbed)
    assert (wd / "results/reports/mlp_a.pdf").exists()


def test_a_second_run_beside_a_live_one_is_refused_and_disturbs_nothing(tmp_path, undisturbed):
    wd = _workdir(tmp_path / "wf")
    first = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=wd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for_radius_job(wd)  # the first run holds its lock and is computing
        second = snakemake(wd, check=False)
        assert second.returncode != 0
        assert "cannot be locked" in second.stdout + second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
    _same_tables(wd, undisturbed)
    assert planned_jobs(wd) == []  # the refused run left nothing half-done behind


def test_an_edited_model_gives_the_table_of_a_from_scratch_audit_of_the_new_model(tmp_path, undisturbed):
    wd = _copy_of(undisturbed, tmp_path / "wf")  # a finished audit of the old model
    assert planned_jobs(wd) == []
    perturb_weights(wd / "models/mlp_a.onnx")  # retrained weights, same file name
    snakemake(wd)
    fresh = _workdir(tmp_path / "fresh")
    shutil.copy2(wd / "models/mlp_a.onnx", fresh / "models/mlp_a.onnx")
    snakemake(fresh)
    _same_tables(wd, fresh)
    assert (wd / "results/reports/mlp_a.pdf").read_bytes() == (fresh / "results/reports/mlp_a.pdf").read_bytes()
    assert (wd / "results/tables/audit.csv").read_bytes() != (undisturbed / "results/tables/audit.csv").read_bytes()


def test_a_code_edit_reruns_every_later_stage_to_the_same_table(tmp_path, undisturbed):
    """Edit the radius stage's file in a shadowing copy of the package: the rerun recomputes the
    radius jobs and every stage after them (aggregation, tables, reports) for real and ends with
    the same table and the same report. (Which jobs an edit of each stage's file plans is the dry
    runs of test_workflow.py::test_a_code_edit_reruns_its_stage_and_what_follows.)"""
    import saferisk

    wd = _copy_of(undisturbed, tmp_path / "wf")
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(saferisk.__file__).resolve().parent, pkg / "saferisk",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    path = pkg / "saferisk" / "steps" / "radius.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    proc = snakemake(wd, env=env)
    ran = {line.split()[-1].rstrip(":") for line in (proc.stdout + proc.stderr).splitlines()
           if line.startswith(("rule ", "localrule "))}
    assert {"compute_radius_shard", "aggregate_model", "combine_tables", "report_model", "report_summary"} <= ran, ran
    _same_tables(wd, undisturbed)
    assert (wd / "results/reports/mlp_a.pdf").read_bytes() == (undisturbed / "results/reports/mlp_a.pdf").read_bytes()
    assert planned_jobs(wd, env=env) == []
