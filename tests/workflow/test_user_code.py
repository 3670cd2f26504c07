"""The user's own code an audit runs is part of what decides a rerun: editing the module of a
weights-only model's `factory` (or a module of the user's it imports) re-exports that model (and reruns what depends on it), editing
a `custom` property's function module reruns that property's radius jobs, nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workflow_support import ROOT, planned_jobs, rule_counts, setup_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow

FACTORY = '''"""The user's network factory (weights in models/net.safetensors)."""
from userlayers import demo_mlp as _demo_mlp


def digits_mlp():
    return _demo_mlp()
'''
LAYERS = '''"""A module of the user's that the factory imports."""
from saferisk.demo.nets import digits_mlp as demo_mlp
'''
PROPERTY = '''"""The user's property: the gap between the two largest outputs stays above the threshold."""


def top_gap(z):
    top = z.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]
'''
DOWNSTREAM = {"aggregate_model": 1, "combine_tables": 1, "report_model": 1, "report_summary": 1, "all": 1}


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> tuple[Path, dict]:
    config = tiny_config(models=("net",), n_rows=2)  # one shard
    config["models"]["net"].update(source="models/net.safetensors", factory="usernets:digits_mlp", input_shape=[64],
                                   properties=["robustness", "custom"])
    config["properties"]["custom"] = dict(config["properties"].pop("uncertainty"), kind="custom",
                                          params={"function": "userprops:top_gap", "threshold": 0.0})
    wd = tmp_path_factory.mktemp("user") / "wf"
    wd.mkdir()
    (wd / "models").mkdir()
    shutil.copy2(ROOT / "saferisk" / "demo" / "digits_mlp.safetensors", wd / "models" / "net.safetensors")
    setup_workdir(wd, config, n_rows=2)
    (wd / "usernets.py").write_text(FACTORY)
    (wd / "userlayers.py").write_text(LAYERS)
    (wd / "userprops.py").write_text(PROPERTY)
    env = {"PYTHONPATH": str(wd)}  # (the custom property is imported in the radius jobs: docs/user-guide.md)
    snakemake(wd, env=env)
    assert planned_jobs(wd, env=env) == []
    return wd, env


@pytest.mark.parametrize("edited, expected", [
    ("usernets.py", {"export_model": 1, "compute_radius_shard": 2, **DOWNSTREAM}),
    ("userlayers.py", {"export_model": 1, "compute_radius_shard": 2, **DOWNSTREAM}),  # imported by the factory
    ("userprops.py", {"compute_radius_shard": 1, **DOWNSTREAM}),
])
def test_editing_the_users_code_reruns_what_runs_it(user_run, edited, expected):
    wd, env = user_run
    path = wd / edited
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        jobs = planned_jobs(wd, env=env)
        assert rule_counts(jobs) == expected
        if edited == "userprops.py":
            assert {w["property"] for rule, w in jobs if rule == "compute_radius_shard"} == {"custom"}
    finally:
        path.write_text(original)
    assert planned_jobs(wd, env=env) == []  # content, not mtimes, decides
