"""Same config + data + code = the same evidence, byte for byte: two from-scratch runs in two
directories (other absolute paths), the second on a machine loaded by another process."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from workflow_support import setup_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow


def _burn(stop_at: float) -> None:  # pragma: no cover - runs in a child process
    import time

    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1_000_003


def _evidence(wd: Path) -> dict[str, bytes]:
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


def test_two_runs_give_byte_identical_tables_witnesses_and_reports(tmp_path):
    config = tiny_config(models=("mlp_a",), n_rows=2, shard_size=1)
    config["properties"]["robustness"]["certify"] = {"method": "crown", "work_budget": 6}  # cut short by work
    del config["report"]["audit_date"]  # the date then comes from the tables: the same day here
    first = setup_workdir(tmp_path / "first", config, n_rows=2)
    snakemake(first)
    second = setup_workdir(tmp_path / "elsewhere" / "second", config, n_rows=2)
    import time

    burners = [multiprocessing.Process(target=_burn, args=(time.time() + 300,)) for _ in range(os.cpu_count() or 2)]
    for p in burners:
        p.start()
    try:
        snakemake(second)
    finally:
        for p in burners:
            p.terminate()
            p.join()
    a, b = _evidence(first), _evidence(second)
    assert sorted(a) == sorted(b)
    assert any(k.endswith(".pdf") for k in a) and any(k.endswith(".witnesses.npz") for k in a)
    assert any(k.endswith("audit.parquet") for k in a) and any(k.endswith("audit.csv") for k in a)
    different = [k for k in a if a[k] != b[k]]
    assert different == []
    # the work budget did cut searches short, and it did so the same way in both runs
    assert b'certify_budget_exhausted' in a["tables/audit.csv"]
    assert b"certify_clock_capped" not in a["tables/audit.csv"]
    assert str(tmp_path).encode() not in b"".join(a.values())  # no absolute path in any artifact
