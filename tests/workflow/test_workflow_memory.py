"""The radius rule's memory request (certify.memory_mb auto: the model's need, from the
manifest its export writes) and the granted memory becoming the certification budget."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_support import setup_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow

RADIUS_TABLE = "results/radii/m/digits/robustness-inf/shard-0.parquet"


def _radius_mem_mb(wd: Path, *args: str) -> list[int]:
    """mem_mb of every compute_radius_shard job a dry run plans."""
    text = snakemake(wd, "-n", *args).stdout
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", text)
    return [int(m.group(1)) for b in blocks if b.startswith("rule compute_radius_shard:")
            for m in [re.search(r"mem_mb=(\d+)", b)] if m]


def test_radius_jobs_ask_for_the_models_need_and_keep_to_the_grant(tmp_path):
    from saferisk.bounds import memory
    from saferisk.bounds.config import CertifyConfig
    from saferisk.config.runtime import RADIUS_JOB_BASE_MB

    config = tiny_config(models=("m",), n_rows=2, shard_size=2)
    del config["properties"]["uncertainty"]
    wd = setup_workdir(tmp_path / "wd", config, n_rows=2)
    # before the export: the manifest is not there to read, the ceiling is planned
    assert _radius_mem_mb(wd) == [RADIUS_JOB_BASE_MB + memory.AUTO_CEILING_MB]
    snakemake(wd, "results/models/m/manifest.json")
    manifest = json.loads((wd / "results/models/m/manifest.json").read_text())
    need = memory.auto_mb(manifest["certify_memory"], CertifyConfig(**config["properties"]["robustness"]["certify"]))
    assert need < memory.AUTO_CEILING_MB // 16  # a small MLP asks for little
    assert _radius_mem_mb(wd) == [RADIUS_JOB_BASE_MB + need]
    # a smaller grant (--set-resources, a cluster default): the budget, recorded per input
    snakemake(wd, RADIUS_TABLE, "--set-resources", f"compute_radius_shard:mem_mb={RADIUS_JOB_BASE_MB + 20}")
    extras = [json.loads(e) for e in pd.read_parquet(wd / RADIUS_TABLE)["extra"]]
    assert extras and all(e["certify_memory_mb"] == 20 and e["certify_memory_need_mb"] == need for e in extras)
    # an explicit certify.memory_mb is what the rule asks for
    config["properties"]["robustness"]["certify"]["memory_mb"] = 700
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert _radius_mem_mb(wd) == [RADIUS_JOB_BASE_MB + 700]
