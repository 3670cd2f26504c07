"""`saferisk init`: configs written for a model run end to end with `snakemake --configfile`."""

from __future__ import annotations

from tests.paths import SHARED
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from saferisk.cli import main
from saferisk.config import load_plan
from workflow_support import evidence_files, ROOT, copy_workflow, snakemake

ACAS = SHARED / "vnncomp" / "acasxu"
TINY = ["--max-inputs", "2", "--samples", "1", "--budget", "200", "--certify-work", "20"]


@pytest.fixture()
def acas_dir() -> Path:
    if not (ACAS / "ACASXU_run2a_1_1_batch_2000.onnx").exists():
        pytest.skip("../shared/vnncomp/acasxu is not available")
    return ACAS


def run_init(wd: Path, monkeypatch, capsys, *args: str) -> tuple[dict, str]:
    monkeypatch.chdir(wd)
    assert main(["init", *args, "--out", "config/my-audit.yaml"]) == 0
    out = capsys.readouterr().out
    # the printed command works as printed: its snakemake is on PATH or the path of an executable
    command = next(line for line in out.splitlines() if line.startswith("next: ")).split()[1:]
    assert command[-2:] == ["--configfile", "config/my-audit.yaml"]
    assert shutil.which(command[0]) or os.access(command[0], os.X_OK), command
    if "--snakefile" in command:  # run where ./Snakefile is not saferisk's: the checkout's
        assert command[1:3] == ["--snakefile", str(ROOT / "Snakefile")]
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
    # the same init-written config, from scratch in another directory: the same evidence, byte for byte
    other = copy_workflow(tmp_path / "elsewhere" / "wf")
    (other / "config").mkdir(exist_ok=True)
    (other / "config/my-audit.yaml").write_text(text)
    snakemake(other, "--configfile", "config/my-audit.yaml")
    first, second = evidence_files(wd), evidence_files(other)
    assert any(k.endswith(".pdf") for k in first) and sorted(first) == sorted(second)
    assert [k for k in first if first[k] != second[k]] == []


def test_init_writes_its_own_audit_folder_by_default(tmp_path, monkeypatch, capsys):
    """Without --out the config goes to audits/<name>/ and runs there (`snakemake --directory`):
    a model named like one of the default audit's never touches results/."""
    wd = copy_workflow(tmp_path / "wf")
    (wd / "data").mkdir()
    shutil.copy2(ROOT / "saferisk/demo/digits_test.npz", wd / "data/digits.npz")
    monkeypatch.chdir(wd)
    assert main(["init", str(ROOT / "saferisk/demo/digits_cnn.onnx"), "--inputs", "data/digits.npz", *TINY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote audits/digits_cnn/config/config.yaml: 1 model, 1 input set, 2 properties ")
    command = next(line for line in out.splitlines() if line.startswith("next: ")).split()[1:]
    assert command[1:] == ["--directory", "audits/digits_cnn"]
    assert shutil.which(command[0]) or os.access(command[0], os.X_OK), command
    config = yaml.safe_load((wd / "audits/digits_cnn/config/config.yaml").read_text())
    assert config["models"]["digits_cnn"]["source"] == str(ROOT / "saferisk/demo/digits_cnn.onnx")
    assert config["input_sets"]["inputs"]["path"] == "../../data/digits.npz"  # from the audit's folder
    jobs = [line for line in snakemake(wd, "-n", "--directory", "audits/digits_cnn").stdout.splitlines()
            if line.strip().startswith("rule compute_radius_shard:")]
    assert len(jobs) == 2 and not (wd / "results").exists() and not (wd / "logs").exists()
    assert main(["init", str(ROOT / "saferisk/demo/digits_cnn.onnx"), "--inputs", "data/digits.npz"]) == 2
    assert "audits/digits_cnn/config/config.yaml exists; pass --force" in capsys.readouterr().err


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
    assert load_plan(wd / "config/my-audit.yaml", base=wd).summary().endswith("-> 1 radius job")


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


def _onnx_of(module, shape, path: Path) -> Path:
    from saferisk.models.load import module_to_onnx

    path.write_bytes(module_to_onnx(module.eval(), shape))
    return path


def test_init_reads_what_the_outputs_mean(tmp_path, monkeypatch, capsys):
    """A final Softmax makes probabilities (uncertainty without a second softmax), one sigmoid
    output a binary classifier (a decision-threshold robustness property, not a vacuous range),
    dense per-pixel outputs a clear message."""
    import numpy as np
    import torch

    from saferisk.config.runtime import property_object

    torch.manual_seed(0)
    softmax_net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=-1))
    with torch.no_grad():
        softmax_net[0].weight.mul_(20)  # confident outputs (p up to ~1)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, 4)))
    wd = tmp_path / "wf"
    (wd / "config").mkdir(parents=True)
    config, text = run_init(wd, monkeypatch, capsys, str(_onnx_of(softmax_net, (4,), tmp_path / "soft.onnx")),
                            "--inputs", str(tmp_path / "x.npy"), *TINY)
    model = config["models"]["soft"]
    assert model["output_kind"] == "probabilities" and "ends in Softmax" in text
    uncertainty = property_object(config["properties"]["uncertainty"], model)
    assert uncertainty.outputs == "probabilities"
    with torch.no_grad():
        p = softmax_net(torch.rand(64, 4, generator=torch.Generator().manual_seed(1)))
    confident = p.max(dim=1).values > 0.9
    bound = [uncertainty.bind(row) for row in p]
    values = torch.stack([b.value(row[None])[0] for b, row in zip(bound, p)])
    assert bool((values[confident] > uncertainty.epsilon).all())  # confident inputs are not "violated at input"

    sigmoid_net = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    (wd / "config/my-audit.yaml").unlink()
    config, _ = run_init(wd, monkeypatch, capsys, str(_onnx_of(sigmoid_net, (4,), tmp_path / "binary.onnx")),
                         "--inputs", str(tmp_path / "x.npy"), *TINY)
    assert sorted(config["properties"]) == ["robustness"]
    assert config["properties"]["robustness"]["params"] == {"binary_threshold": 0.5}
    assert config["models"]["binary"]["output_kind"] == "probabilities"
    prop = property_object(config["properties"]["robustness"], config["models"]["binary"])
    high, low = prop.bind(torch.tensor([0.8])), prop.bind(torch.tensor([0.3]))
    assert high.decision == 1 and low.decision == 0
    assert float(high.value(torch.tensor([[0.4]]))[0]) <= 0 < float(high.value(torch.tensor([[0.6]]))[0])
    assert float(low.value(torch.tensor([[0.6]]))[0]) <= 0 < float(low.value(torch.tensor([[0.4]]))[0])

    class Dense(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(x * 2.0)  # (B, 1, 4, 4): one output per pixel

    (wd / "config/my-audit.yaml").unlink()
    monkeypatch.chdir(wd)
    assert main(["init", str(_onnx_of(Dense(), (1, 4, 4), tmp_path / "seg.onnx")), "--out", "config/my-audit.yaml"]) == 2
    assert "dense per-position outputs" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "vit"])
def test_init_audits_a_transformer_and_an_rnn_end_to_end(name, tmp_path, monkeypatch, capsys):
    """An RNN and a transformer (read per sample: they move the batch dimension) get a full audit:
    export, gradient-guided search, certified bounds where their layers have relaxations, and a
    report naming the evaluator."""
    import numpy as np

    from tests.real_networks import build

    module, shape, evaluator, bounded = build(name)
    source = _onnx_of(module, shape, tmp_path / f"{name}.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, *shape)).reshape(4, -1))
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config").mkdir(exist_ok=True)
    config, _ = run_init(wd, monkeypatch, capsys, str(source), "--inputs", str(tmp_path / "x.npy"), *TINY)
    snakemake(wd, "--configfile", "config/my-audit.yaml")
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert set(table["model"]) == {name} and len(table) == 2 * 2
    assert set(table["evaluator"]) == {evaluator} == {"torch"}
    assert table["status"].str.startswith("failed").sum() == 0
    assert table["radius_estimate"].notna().all()
    searched = table[table["status"] == "ok"]  # (an input violated at x0 has radius 0)
    assert len(searched) >= 2
    if bounded:
        assert searched["radius_lower"].notna().all()
        assert (searched["radius_lower"] <= searched["radius_upper"].fillna(np.inf)).all()
    else:
        assert searched["radius_lower"].isna().all()
        assert searched["radius_lower_method"].str.contains("unsupported operation").all()
    manifest = (wd / f"results/models/{name}/manifest.json").read_text()
    assert f'"evaluator": "{evaluator}"' in manifest
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(wd / f"results/reports/{name}.pdf").pages)
    assert evaluator in text
