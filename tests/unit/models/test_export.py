"""export_model / `saferisk export`: canonical artifact + manifest, determinism, atomicity."""

from __future__ import annotations

from tests.paths import SHARED
import importlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import saferisk.models.export as export_module
from saferisk.cli import main
from saferisk.errors import DataError, ModelError
from saferisk.io import sha256_file
from saferisk.models import load_model
from saferisk.models.export import export_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit / legacy ONNX export


NETS_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn

    def make_net(hidden=8, seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                             nn.Linear(2 * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 3))
''')
SHAPE = (1, 6, 6)
FACTORY = "saferisk_export_nets:make_net"


@pytest.fixture(scope="module")
def nets_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_nets")
    (folder / "saferisk_export_nets.py").write_text(NETS_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("saferisk_export_nets")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("saferisk_export_nets", None)


@pytest.fixture
def state_dict_source(nets_module, tmp_path):
    net = nets_module.make_net().eval()
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), str(path))
    return net, {"path": str(path), "factory": FACTORY, "input_shape": list(SHAPE), "domain": [0, 1],
                 "class_names": ["a", "b", "c"]}


@pytest.fixture(scope="module")
def vnncomp() -> Path:
    if not (SHARED / "vnncomp").is_dir():
        pytest.skip("../shared/vnncomp is absent")
    return SHARED / "vnncomp"


def files_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_state_dict_export_manifest_and_reload(state_dict_source, tmp_path):
    net, source = state_dict_source
    x = np.random.default_rng(0).uniform(0, 1, (20, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        labels = net(torch.from_numpy(x)).argmax(1).numpy()
    labels[:5] = (labels[:5] + 1) % 3  # 5 of 20 wrong -> accuracy 0.75
    out = tmp_path / "out"
    manifest = export_model(source, out, check_inputs=x, labels=labels)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["artifact_sha256"] == sha256_file(out / "model.onnx")
    assert manifest["source"]["sha256"] == sha256_file(source["path"])
    assert manifest["format"] == "state_dict" and manifest["artifact_opset"] == 17
    assert manifest["input_shape"] == list(SHAPE) and manifest["n_inputs"] == 36 and manifest["n_outputs"] == 3
    assert manifest["domain"] == {"lower": 0.0, "upper": 1.0}
    assert manifest["check"]["accuracy"] == pytest.approx(0.75)
    assert manifest["check"]["n_rows"] == 20 and manifest["check"]["max_abs_diff"] < 1e-5
    assert "time" not in json.dumps(manifest).lower()
    model = load_model(out)  # the directory: artifact + matching manifest
    assert model.sha256 == manifest["artifact_sha256"] and model.metadata["class_names"] == ["a", "b", "c"]
    torch.testing.assert_close(model.forward_flat(torch.from_numpy(x).reshape(20, -1)), net(torch.from_numpy(x)),
                               atol=1e-5, rtol=1e-5)


def test_reexport_is_byte_identical_and_does_not_touch_files(state_dict_source, tmp_path):
    _, source = state_dict_source
    out = tmp_path / "out"
    export_model(source, out)
    first = files_of(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    export_model(source, tmp_path / "again")
    assert files_of(tmp_path / "again") == first  # a fresh export gives the same bytes
    export_model(source, out)
    assert files_of(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_onnx_reexport_is_byte_identical(vnncomp, tmp_path):
    source = {"path": str(vnncomp / "acasxu" / "ACASXU_run2a_2_1_batch_2000.onnx"), "decision": "argmin"}
    a = export_model(source, tmp_path / "a")
    b = export_model(source, tmp_path / "b")
    assert a == b and files_of(tmp_path / "a") == files_of(tmp_path / "b")
    assert a["artifact_opset"] == 17 and a["source"]["format"] == "onnx"
    model = load_model(tmp_path / "a" / "model.onnx")
    assert model.decision == "argmin" and model.input_shape == (1, 1, 5)


def test_failed_export_keeps_old_files(state_dict_source, tmp_path, monkeypatch):
    _, source = state_dict_source
    out = tmp_path / "out"
    export_model(source, out)
    before = files_of(out)
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes((out / "model.onnx").read_bytes()[:100])
    with pytest.raises(ModelError):
        export_model({"path": str(bad)}, out)
    with pytest.raises(DataError, match="outside the domain"):
        export_model(source, out, check_inputs=np.full((2, 36), 2.0))
    # a different model whose manifest write fails half-way: nothing may change
    other = dict(source, factory_kwargs={"hidden": 8, "seed": 1})
    torch.save(importlib.import_module("saferisk_export_nets").make_net(seed=1).state_dict(), source["path"])
    real_fdopen = export_module.os.fdopen
    calls = {"n": 0}

    def failing_fdopen(fd, mode):
        calls["n"] += 1
        if calls["n"] == 2:  # the manifest, after the artifact was staged
            raise OSError("disk full")
        return real_fdopen(fd, mode)

    monkeypatch.setattr(export_module.os, "fdopen", failing_fdopen)
    with pytest.raises(OSError, match="disk full"):
        export_model(other, out)
    assert files_of(out) == before  # no temporary files left either
    monkeypatch.undo()
    assert export_model(other, out)["artifact_sha256"] != json.loads(before["manifest.json"])["artifact_sha256"]


def test_tolerance_violation_is_an_error(state_dict_source, tmp_path, monkeypatch):
    _, source = state_dict_source
    real = export_module._torch_reference

    def shifted(module):
        run = real(module)
        return lambda x: run(x) + 1e-3
    monkeypatch.setattr(export_module, "_torch_reference", shifted)
    with pytest.raises(ModelError, match="differs from the source"):
        export_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export_prints_manifest(state_dict_source, tmp_path, capsys):
    net, source = state_dict_source
    x = np.random.default_rng(1).uniform(0, 1, (4, 36)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", net(torch.from_numpy(x).reshape(4, *SHAPE)).argmax(1).detach().numpy())
    out = tmp_path / "cli"
    code = main(["export", "--source", source["path"], "--factory", FACTORY, "--factory-kwargs", '{"hidden": 8}',
                 "--input-shape", "1,6,6", "--domain=0,1", "--check-inputs", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "manifest.json").read_text())
    assert printed["check"]["accuracy"] == 1.0 and printed["source"]["factory_kwargs"] == {"hidden": 8}
    np.save(tmp_path / "domain.npy", np.stack([np.zeros(36), np.linspace(1, 2, 36)]))
    code = main(["export", "--source", source["path"], "--factory", FACTORY, "--input-shape", "1,6,6",
                 "--domain", str(tmp_path / "domain.npy"), "--out", str(tmp_path / "cli2")])
    per_feature = json.loads(capsys.readouterr().out)["domain"]
    assert code == 0 and per_feature["lower"] == [0.0] * 36 and per_feature["upper"][-1] == 2.0
    code = main(["export", "--source", str(tmp_path / "missing.pth"), "--out", str(out)])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_onnx_source_checked_without_onnxruntime(nets_module, tmp_path, monkeypatch):
    net = nets_module.make_net().eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.zeros(1, *SHAPE),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails -> onnx.reference is used
    manifest = export_model({"path": str(path), "domain": {"lower": 0.0, "upper": 1.0}}, tmp_path / "out")
    assert manifest["check"]["inputs"] == "random:8:seed0" and manifest["check"]["max_abs_diff"] < 1e-5
    assert manifest["artifact_opset"] == 17 and manifest["format"] == "onnx"
