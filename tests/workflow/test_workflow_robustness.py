"""Failures stay local and killed runs resume: real Snakemake runs in tmp dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_support import SNAKEMAKE, perturb_weights, setup_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow


def one_property_config(models, n_rows, shard_size):
    config = tiny_config(models=models, n_rows=n_rows, shard_size=shard_size)
    del config["properties"]["uncertainty"]
    return config


def incomplete_outputs(wd: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (jobs running when the run was killed)."""
    from base64 import urlsafe_b64decode

    root = wd / ".snakemake" / "incomplete"
    marked = set()
    for path in root.rglob("*") if root.exists() else ():
        if path.is_file():
            parts = path.relative_to(root).parts
            marked.add(urlsafe_b64decode("".join(p.lstrip("@") for p in parts)).decode())
    return marked


def test_failing_model_fails_only_its_own_jobs(tmp_path):
    config = one_property_config(("mlp_a", "mlp_nan"), 4, 4)
    wd = setup_workdir(tmp_path / "wf", config)
    perturb_weights(wd / "models/mlp_nan.onnx", scale=float("nan"))
    proc = snakemake(wd, "--keep-going", "results/tables/mlp_a.parquet", "results/tables/mlp_nan.parquet",
                     check=False)
    assert proc.returncode != 0
    assert len(pd.read_parquet(wd / "results/tables/mlp_a.parquet")) == 4
    assert not (wd / "results/tables/mlp_nan.parquet").exists()
    assert not list((wd / "results").rglob("mlp_nan/**/*.parquet"))
    logs = [p for p in (wd / "logs").rglob("*.log") if "mlp_nan" in str(p)]
    text = "\n".join(p.read_text() for p in logs)
    assert "error:" in text and ("NaN" in text or "non-finite" in text), text[-2000:]
    # no temporary files left behind by the failed job
    assert not list((wd / "results").rglob(".*.tmp"))


def test_killed_run_resumes_without_losing_finished_shards(tmp_path):
    config = one_property_config(("mlp_a",), 4, 1)
    wd = setup_workdir(tmp_path / "wf", config)
    target = "results/tables/mlp_a.parquet"
    radii = wd / "results/radii/mlp_a/digits/robustness-inf"
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1", target], cwd=wd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240

        def recorded() -> list[Path]:
            unfinished = incomplete_outputs(wd)
            return [p for p in radii.glob("shard-*.parquet") if str(p.relative_to(wd)) not in unfinished]

        while time.time() < deadline and not recorded():
            time.sleep(0.2)
        assert list(radii.glob("shard-*.parquet")), "no shard finished before the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait()
    # a job killed after writing its outputs but before Snakemake recorded it is redone
    unfinished = incomplete_outputs(wd)
    finished = {p.name: p.stat().st_mtime_ns for p in radii.glob("shard-*.parquet")
                if str(p.relative_to(wd)) not in unfinished}
    assert finished, "no shard was recorded as finished before the kill"
    assert len(finished) < 4, "the run finished before it could be killed"
    for path in radii.glob("shard-*.parquet"):
        assert len(pd.read_parquet(path)) == 1  # outputs are whole (atomic writes)
    snakemake(wd, "--unlock")
    snakemake(wd, "--rerun-incomplete", target)
    assert sorted(p.name for p in radii.glob("shard-*.parquet")) == [f"shard-{k}.parquet" for k in range(4)]
    for name, mtime in finished.items():
        assert (radii / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    assert len(pd.read_parquet(wd / target)) == 4
