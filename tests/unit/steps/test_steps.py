"""saferisk.steps without Snakemake: each step on real demo files, the outputs the next step reads."""

from __future__ import annotations

from tests.paths import REPO, DEMO
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saferisk import layout
from saferisk.errors import DataError

ROOT = REPO
DEMO = ROOT / "saferisk" / "demo"
SEEDS = {"selection": 0, "samples": 0, "search": 0}
QUICK_PROPERTY = {"kind": "robustness", "params": {}, "max_radius": 0.2, "scale": "input",
                  "search": {"mode": "fast", "budget": 300, "n_starts": 1, "n_random": 64, "max_iterations": 20},
                  "certify": {"method": "ibp", "work_budget": 20}}
MODEL_SPEC = {"source": "demo:digits_mlp.onnx", "format": "auto", "factory": None, "input_shape": None,
              "domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits", "decision": "argmax",
              "class_names": None}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_input_steps_write_a_shard_and_its_manifest(workdir):
    from saferisk.data.spec import InputSetSpec, describe
    from saferisk.steps.inputs import describe_input_set, input_set_digest, prepare_input_shard

    entry = {"path": "demo:digits_test.npz", "selection": {"first": 5}}
    info = describe(InputSetSpec.from_config("digits", entry, workdir, SEEDS))
    out = layout.input_shard("digits", 0)
    assert prepare_input_shard("digits", entry, SEEDS, info.positions, info.shard_fingerprint(0, 5), out) == 5
    manifest = describe_input_set("digits", [out], layout.input_manifest("digits"))
    assert manifest["rows"] == 5 and manifest["features"] == 64 and manifest["labels"] is True
    assert input_set_digest(manifest) == manifest["shards"][0]["sha256"]
    first = Path(out).read_bytes()
    prepare_input_shard("digits", entry, SEEDS, info.positions, info.shard_fingerprint(0, 5), out)
    assert Path(out).read_bytes() == first  # byte-identical on a rerun
    with pytest.raises(DataError, match="changed while the workflow ran"):
        prepare_input_shard("digits", entry, SEEDS, info.positions, "0" * 16, out)


def test_export_radius_tables_and_report_steps_chain(workdir):
    from saferisk.data.spec import InputSetSpec, describe
    from saferisk.steps.export import export_model_step
    from saferisk.steps.inputs import prepare_input_shard
    from saferisk.steps.radius import radius_shard
    from saferisk.steps.reports import read_summary, report_model_step
    from saferisk.steps.tables import aggregate_model, combine_tables

    manifest = export_model_step("m", MODEL_SPEC, str(DEMO / "digits_mlp.onnx"), str(Path(layout.model_artifact("m")).parent))
    assert Path(layout.model_artifact("m")).is_file() and manifest["artifact_sha256"]
    entry = {"path": "demo:digits_test.npz", "selection": {"first": 3}}
    info = describe(InputSetSpec.from_config("digits", entry, workdir, SEEDS))
    prepare_input_shard("digits", entry, SEEDS, info.positions, info.shard_fingerprint(0, 3), layout.input_shard("digits", 0))
    table_path = layout.radius_table("m", "digits", "robustness", "inf", 0)
    results = radius_shard(model_name="m", model_path=layout.model_artifact("m"), manifest_path=layout.model_manifest("m"),
                           model_spec={k: MODEL_SPEC[k] for k in ("decision", "domain", "output_kind")},
                           input_set="digits", shard_path=layout.input_shard("digits", 0), property_name="robustness",
                           property_spec=QUICK_PROPERTY, norm="inf", seed=0, device="cpu", out_path=table_path,
                           witness_path=layout.radius_witnesses("m", "digits", "robustness", "inf", 0),
                           witness_ref=layout.witness_file_ref("digits", "robustness", "inf", 0))
    assert len(results) == 3 and all(r.radius_lower is None or r.radius_lower <= r.radius_upper + 1e-12
                                     for r in results if r.radius_upper is not None)
    shard = pd.read_parquet(table_path)
    refs = [r for r in shard["witness_ref"] if r]
    assert refs and all(r.startswith("digits/robustness-inf/shard-0.witnesses.npz#") for r in refs)
    criteria = [{"property": "robustness", "norm": None, "model": None, "radius": 0.001, "min_fraction": 0.5,
                 "basis": "certified"}]
    summary = aggregate_model("m", [table_path], criteria, layout.tables_dir())
    combined = combine_tables([layout.model_table("m")], criteria, layout.tables_dir(), ["m"])
    assert summary["model_verdicts"] == combined["model_verdicts"]
    loaded = read_summary(layout.model_table("m", "summary.json"))
    assert loaded.to_dict() == json.loads(Path(layout.model_table("m", "summary.json")).read_text())
    pdf = report_model_step(model_name="m", table_path=layout.model_table("m"),
                            summary_path=layout.model_table("m", "summary.json"),
                            manifest_path=layout.model_manifest("m"), model_spec=MODEL_SPEC,
                            report_options={"title": "steps test", "audit_date": "2026-01-02"},
                            templates_dir=str(ROOT / "reports"), out_path=layout.model_report("m"))
    assert Path(pdf).read_bytes()[:5] == b"%PDF-"


def test_audit_date_is_configured_or_the_table_date_never_now(tmp_path):
    from saferisk.steps.provenance import audit_date

    table = tmp_path / "t.parquet"
    table.write_bytes(b"x")
    os.utime(table, (1_700_000_000, 1_700_000_000))  # 2023-11-14T22:13:20Z
    assert audit_date(None, table) == "2023-11-14"
    assert audit_date("2026-01-01", table) == "2026-01-01"


def test_radius_brackets_takes_the_input_sets_own_domain(tmp_path):
    """The CLI and the workflow measure in the same domain: explicit, else the model entry's,
    else the input set's own (here a box), else unbounded."""
    import torch

    from saferisk.data.domain import Domain
    from saferisk.data.formats import BoxSource
    from saferisk.models.model import Model
    from saferisk.models.graph import Graph, Node
    from saferisk.steps.radius import radius_brackets

    net = Model(Graph("x", "fc", (2,), [Node("linear", ["x"], "fc", {"weight": torch.tensor([[1.0, 0.0]]),
                                                                      "bias": torch.tensor([0.0])})]))
    region = BoxSource({"lower": [0.0, 0.0], "upper": [1.0, 1.0]}, samples=0).read()
    spec = {"kind": "reachability", "params": {"output": 0, "upper": 2.0}, "max_radius": 5.0, "scale": "input",
            "search": {"budget": 200}, "certify": {"enabled": False}}
    own = radius_brackets(net, region, spec, "inf")[0]
    wide = radius_brackets(net, region, spec, "inf", domain=Domain.scalar(-100.0, 100.0, 2))[0]
    assert own.radius_upper is None  # inside the box [0, 1]^2 the output x_0 never exceeds 2
    # x_0 = 0.5 + r reaches 2 at r* = 1.5: a witness lies at or beyond r*, well inside max_radius 5
    assert 1.5 - 1e-6 <= wide.radius_upper < 2.0
