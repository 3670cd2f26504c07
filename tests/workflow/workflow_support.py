"""Helpers of the workflow tests: a copy of the workflow in a tmp dir and real Snakemake runs.

(No tests here; the file name keeps it among the workflow test files.)
"""

from __future__ import annotations

from tests.paths import REPO
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = REPO
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ("Snakefile", "workflow", "reports", "profiles", "environment.yml")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def tiny_config(models=("mlp_a", "mlp_b"), n_rows: int = 4, shard_size: int = 2) -> dict:
    """Two small digits MLPs x robustness + uncertainty on a few digits, tiny budgets."""
    search = {"mode": "fast", "budget": 300, "n_starts": 1, "n_random": 64, "max_iterations": 20}
    certify = {"method": "ibp", "work_budget": 20}
    return {
        "models": {m: {"source": f"models/{m}.onnx", "domain": {"lower": 0.0, "upper": 1.0},
                       "input_sets": ["digits"]} for m in models},
        "input_sets": {"digits": {"path": "data/digits.npz"}},
        "properties": {
            "robustness": {"kind": "robustness", "norms": "inf", "max_radius": 0.2, "search": search,
                           "certify": certify},
            "uncertainty": {"kind": "uncertainty", "params": {"epsilon": 0.1}, "norms": "inf",
                            "max_radius": 0.2, "search": search, "certify": certify},
        },
        "criteria": [{"property": "robustness", "radius": 0.01, "min_fraction": 0.5}],
        "sharding": {"shard_size": shard_size},
        "report": {"title": "workflow test", "audit_date": "2026-01-01"},
        "device": "cpu",
    }


def setup_workdir(dest: Path, config: dict | None = None, n_rows: int = 4) -> Path:
    copy_workflow(dest)
    (dest / "models").mkdir(exist_ok=True)
    (dest / "data").mkdir(exist_ok=True)
    config = config or tiny_config()
    for name in config["models"]:
        if not (dest / "models" / f"{name}.onnx").exists():
            shutil.copy2(ROOT / "saferisk" / "demo" / "digits_mlp.onnx", dest / "models" / f"{name}.onnx")
    write_digits(dest, n_rows)
    (dest / "config").mkdir(exist_ok=True)
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def write_digits(dest: Path, n_rows: int) -> None:
    with np.load(ROOT / "saferisk" / "demo" / "digits_test.npz") as data:
        np.savez(dest / "data" / "digits.npz", X=data["X"][:n_rows], y=data["y"][:n_rows])


def perturb_weights(path: Path, scale: float = 1.05) -> None:
    """Change an ONNX model's first weight matrix (a real change of the model)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(init) * scale
    init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), init.name))
    onnx.save(model, str(path))


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 600,
              check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def evidence_files(wd: Path) -> dict[str, bytes]:
    """Every table, summary, witness file, input shard, model artifact and report of a run
    (timings, logs, benchmarks and run metadata are not evidence)."""
    results = wd / "results"
    keep = []
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results).as_posix()
        if not path.is_file() or rel.startswith("benchmarks/") or rel == "run-metadata.json":
            continue
        if rel.endswith(".timings.csv") or rel.startswith("radii/") and rel.endswith(".parquet"):
            continue  # timings; the radius shards carry them too (the tables do not)
        keep.append((rel, path.read_bytes()))
    return dict(keep)


_JOB_RE = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
_WILDCARDS_RE = re.compile(r"^\s*wildcards: (.*)$")


def planned_jobs(workdir: Path, *targets: str, env: dict | None = None) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run would execute (empty when up to date)."""
    proc = snakemake(workdir, "-n", *targets, env=env)
    text = proc.stdout + proc.stderr
    jobs: list[tuple[str, dict]] = []
    for line in text.splitlines():
        match = _JOB_RE.match(line)
        if match:
            jobs.append((match.group(1), {}))
            continue
        match = _WILDCARDS_RE.match(line)
        if match and jobs:
            jobs[-1] = (jobs[-1][0], dict(item.split("=", 1) for item in match.group(1).split(", ")))
    if not jobs:
        assert "Nothing to be done" in text, text[-3000:]
    return jobs


def radius_jobs(jobs: list[tuple[str, dict]]) -> set[tuple[str, str, str, str, str]]:
    return {(w["model"], w["inputs"], w["property"], w["norm"], w["shard"])
            for rule, w in jobs if rule == "compute_radius_shard"}


def rule_counts(jobs: list[tuple[str, dict]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    return counts
