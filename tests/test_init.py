"""`saferisk init`: configs written for a model run end to end with `snakemake --configfile`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from saferisk.cli import main
from saferisk.config import load_plan
from test_workflow_support import ROOT, copy_workflow, snakemake

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ACAS = SHARED / "vnncomp" / "acasxu"
TINY = ["--max-inputs", "2", "--samples", "1", "--budget", "200", "--certify-seconds", "0.05"]


@pytest.fixture()
def acas_dir() -> Path:
    if not (ACAS / "ACASXU_run2a_1_1_batch_2000.onnx").exists():
        pytest.skip("../shared/vnncomp/acasxu is not available")
    return ACAS


def run_init(wd: Path, monkeypatch, capsys, *args: str) -> tuple[dict, str]:
    monkeypatch.chdir(wd)
    assert main(["init", *args, "--out", "config/my-audit.yaml"]) == 0
    out = capsys.readouterr().out
    assert "next: snakemake --configfile config/my-audit.yaml" in out
    text = (wd / "config/my-audit.yaml").read_text()
    return yaml.safe_load(text), text


def test_init_classifier_digits_cnn_runs_end_to_end(tmp_path, monkeypatch, capsys):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config").mkdir(exist_ok=True)
    config, text = run_init(wd, monkeypatch, capsys, str(ROOT / "saferisk/demo/digits_cnn.onnx"),
                            "--inputs", str(ROOT / "saferisk/demo/digits_test.npz"), *TINY)
    assert text.startswith("# saferisk audit config") and "# the decision must not change" in text
    model = config["models"]["digits_cnn"]
    assert model["domain"] == {"lower": 0, "upper": 1} and model["decision"] == "argmax"
    assert sorted(config["properties"]) == ["robustness", "uncertainty"]
    assert config["input_sets"]["inputs"]["selection"] == {"first": 2}
    snakemake(wd, "--configfile", "config/my-audit.yaml")
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert set(table["model"]) == {"digits_cnn"} and len(table) == 2 * 2
    assert (wd / "results/reports/digits_cnn.pdf").read_bytes().startswith(b"%PDF")
    # --configfile replaces the default audit: none of its models appear
    assert not (wd / "results/models/digits_mlp").exists()


def test_init_acas_xu_argmin_over_vnnlib_box(tmp_path, monkeypatch, capsys, acas_dir):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config").mkdir(exist_ok=True)
    config, _ = run_init(wd, monkeypatch, capsys, str(acas_dir / "ACASXU_run2a_1_1_batch_2000.onnx"),
                         "--inputs", str(acas_dir / "prop_3.vnnlib"), "--decision", "argmin",
                         "--name", "acas_1_1", *TINY)
    model = config["models"]["acas_1_1"]
    assert model["decision"] == "argmin" and len(model["domain"]["lower"]) == 5
    assert config["input_sets"]["inputs"]["samples"] == 1
    assert config["properties"]["robustness"]["scale"] == "domain"
    snakemake(wd, "results/tables/audit.csv", "--configfile", "config/my-audit.yaml")  # target first: --configfile takes 1+ values
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert set(table["model"]) == {"acas_1_1"} and len(table) == 2 * 2  # (centre + 1 sample) x 2 properties
    assert table["status"].str.startswith("failed").sum() == 0
    assert set(table["decision"].dropna().astype(int)) <= set(range(5))


def test_init_regression_gets_reachability(tmp_path, monkeypatch, capsys):
    wd = tmp_path / "wf"
    (wd / "config").mkdir(parents=True)
    config, text = run_init(wd, monkeypatch, capsys, str(ROOT / "saferisk/demo/regression_net.onnx"),
                            "--inputs", str(ROOT / "saferisk/demo/regression_net.json"), *TINY)
    prop = config["properties"]["reachability"]
    assert prop["kind"] == "reachability" and prop["params"]["lower"] < prop["params"]["upper"]
    assert "EDIT to the safe range" in text
    assert config["models"]["regression_net"]["output_kind"] == "regression"
    assert load_plan(wd / "config/my-audit.yaml", base=wd).summary().endswith("-> 1 radius jobs")


def test_init_refuses_to_overwrite_and_mismatched_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("keep me")
    assert main(["init", str(ROOT / "saferisk/demo/digits_cnn.onnx"), "--out", "a.yaml"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "a.yaml").read_text() == "keep me"
    assert main(["init", str(ROOT / "saferisk/demo/digits_cnn.onnx"), "--inputs",
                 str(ROOT / "saferisk/demo/regression_net.json"), "--out", "b.yaml"]) == 2
    assert "3 features per input, the model takes 64" in capsys.readouterr().err
    assert not (tmp_path / "b.yaml").exists()
