"""Same config + data + code = the same evidence, byte for byte: two from-scratch runs in two
directories (other absolute paths) at the same time, each on a machine loaded by the other."""

from __future__ import annotations

import subprocess

import pytest

from workflow_support import SNAKEMAKE, evidence_files, setup_workdir, tiny_config

pytestmark = pytest.mark.slow


def test_two_runs_give_byte_identical_tables_witnesses_and_reports(tmp_path):
    config = tiny_config(models=("mlp_a",), n_rows=2, shard_size=1)
    config["properties"]["robustness"]["certify"] = {"method": "crown", "work_budget": 6}  # cut short by work
    del config["report"]["audit_date"]  # the date then comes from the tables: the same day here
    first = setup_workdir(tmp_path / "first", config, n_rows=2)
    second = setup_workdir(tmp_path / "elsewhere" / "second", config, n_rows=2)
    # both at once: each runs on a machine loaded by the other (2 x 2 cores asked of 2 cores here)
    runs = []
    for wd in (first, second):
        with open(wd / "snakemake.out", "w") as out:  # a file: a full pipe would stall a run
            runs.append(subprocess.Popen([*SNAKEMAKE, "--cores", "2"], cwd=wd, stdout=out, stderr=subprocess.STDOUT))
    for wd, run in zip((first, second), runs):
        assert run.wait(timeout=600) == 0, (wd / "snakemake.out").read_text()[-4000:]
    a, b = evidence_files(first), evidence_files(second)
    assert sorted(a) == sorted(b)
    assert any(k.endswith(".pdf") for k in a) and any(k.endswith(".witnesses.npz") for k in a)
    assert any(k.endswith("audit.parquet") for k in a) and any(k.endswith("audit.csv") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == []
    # the work budget did cut searches short, and it did so the same way in both runs
    assert b'certify_budget_exhausted' in a["tables/audit.csv"]
    assert b"certify_clock_capped" not in a["tables/audit.csv"]
    assert str(tmp_path).encode() not in b"".join(a.values())  # no absolute path in any artifact
