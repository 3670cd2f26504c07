"""load_model for every source format: outputs match the torch module; unsafe/bad files refused."""

from __future__ import annotations

from tests.paths import DEMO
import importlib
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from saferisk.errors import ConfigError, ModelError
from saferisk.models import load_model
from saferisk.models.load import infer_format, resolve_device


NETS_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn

    def make_mlp(hidden=16):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                             nn.Tanh(), nn.Linear(hidden, 3))

    class SmallCNN(nn.Module):
        def __init__(self, channels=4):
            super().__init__()
            torch.manual_seed(1)
            self.conv = nn.Conv2d(1, channels, 3, padding=1)
            self.bn = nn.BatchNorm2d(channels)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.avg = nn.AvgPool2d(2)
            self.fc = nn.Linear(channels * 2 * 2, 5)
            for bn in (self.bn, self.bn2):  # non-trivial running statistics
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.uniform_(-0.2, 0.2)

        def forward(self, x):
            x = self.pool(torch.relu(self.bn(self.conv(x))))
            x = self.avg(torch.relu(self.bn2(self.conv2(x))))
            return self.fc(x.view(x.size(0), -1))

    def make_cnn(channels=4):
        return SmallCNN(channels)

    class BatchOneOnly(nn.Module):  # written for one sample at a time
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.fc = nn.Linear(12, 4)

        def forward(self, x):
            return torch.relu(self.fc(x.reshape(1, 12)))

    def make_batch_one():
        return BatchOneOnly()
''')

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit / legacy ONNX export

SHAPES = {"mlp": (3, 4), "cnn": (1, 8, 8)}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    (folder / "saferisk_test_nets.py").write_text(NETS_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("saferisk_test_nets")
        yield {"mlp": (module.make_mlp().eval(), "saferisk_test_nets:make_mlp"),
               "cnn": (module.make_cnn().eval(), "saferisk_test_nets:make_cnn"),
               "batch_one": (module.make_batch_one().eval(), "saferisk_test_nets:make_batch_one")}
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("saferisk_test_nets", None)


def save_as(fmt: str, net: torch.nn.Module, shape, folder):
    """Write `net` in `fmt`; returns (path, load_model kwargs needed besides the path)."""
    example = torch.zeros((1, *shape))
    if fmt == "onnx":
        path = folder / "net.onnx"
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=13,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        return path, {}
    if fmt == "torchscript":
        path = folder / "net.pt"  # a TorchScript archive recognised behind the .pt extension
        torch.jit.trace(net, example).save(str(path))
        return path, {"input_shape": shape}
    if fmt == "torch_export":
        path = folder / "net.pt2"
        torch.export.save(torch.export.export(net, (example,)), str(path))
        return path, {}
    if fmt == "state_dict":
        path = folder / "net.pth"
        torch.save(net.state_dict(), str(path))
        return path, {"input_shape": shape}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = folder / "net.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        return path, {"input_shape": shape}
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch_export", "state_dict", "safetensors"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_round_trip_matches_torch(nets, kind, fmt, tmp_path):
    net, factory = nets[kind]
    shape = SHAPES[kind]
    path, kwargs = save_as(fmt, net, shape, tmp_path)
    if fmt in ("state_dict", "safetensors"):
        kwargs["factory"] = factory
    assert infer_format(path) == fmt
    model = load_model(path, **kwargs)
    assert model.input_shape == shape
    x = torch.randn(33, *shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = net(x)
    got = model.forward_flat(x.reshape(33, -1))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert len(model.sha256) == 64
    if kind == "cnn":
        assert {"conv", "maxpool", "avgpool"} <= {n.op for n in model.graph.nodes}


def test_module_written_for_batch_one_still_runs_batched(nets, tmp_path):
    net, factory = nets["batch_one"]
    path, kwargs = save_as("safetensors", net, SHAPES["mlp"], tmp_path)
    model = load_model(path, factory=factory, **kwargs)
    x = torch.randn(9, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = torch.cat([net(row.reshape(1, 3, 4)) for row in x])
    torch.testing.assert_close(model.forward_flat(x), expected, atol=1e-6, rtol=1e-6)


def test_state_dict_with_wrong_factory_kwargs_is_clear(nets, tmp_path):
    net, factory = nets["mlp"]
    path, _ = save_as("state_dict", net, SHAPES["mlp"], tmp_path)
    with pytest.raises(ModelError, match="does not fit"):
        load_model(path, factory=factory, factory_kwargs={"hidden": 8}, input_shape=SHAPES["mlp"])
    with pytest.raises(ModelError, match="factory="):
        load_model(path, input_shape=SHAPES["mlp"])
    with pytest.raises(ModelError, match="cannot be imported"):
        load_model(path, factory="no_such_module_xyz:make", input_shape=SHAPES["mlp"])
    with pytest.raises(ConfigError, match="input_shape"):
        load_model(path, factory=factory)


class _Malicious:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_never_executed(nets, tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": _Malicious(marker)}
    if writer == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, str(path))
    assert not marker.exists()
    with pytest.raises(ModelError, match="refuses arbitrary pickles"):
        load_model(path, factory=nets["mlp"][1], input_shape=SHAPES["mlp"])
    assert not marker.exists()


def test_pickled_whole_module_is_refused(nets, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nets["mlp"][0], str(path))
    with pytest.raises(ModelError, match="refuses arbitrary pickles"):
        load_model(path, factory=nets["mlp"][1], input_shape=SHAPES["mlp"])


def test_damaged_torch_files_are_called_damaged_not_unsafe(nets, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(nets["mlp"][0].state_dict(), str(good))
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    for name, message in (("truncated.pt", "not a readable torch file"), ("noise.pt", "it is damaged, or a plain pickle")):
        with pytest.raises(ModelError, match=message) as exc:
            load_model(tmp_path / name, factory=nets["mlp"][1], input_shape=SHAPES["mlp"])
        assert "weights_only` set to `False`" not in str(exc.value) and "\x1b" not in str(exc.value)
    torch.save({"weight": torch.zeros(2), "step": 3}, str(tmp_path / "mixed.pt"))
    with pytest.raises(ModelError, match="found a dict that also holds int"):
        load_model(tmp_path / "mixed.pt", factory=nets["mlp"][1], input_shape=SHAPES["mlp"])


def test_missing_unknown_and_corrupt_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.onnx")
    odd = tmp_path / "model.h5"
    odd.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model extension '.h5'"):
        load_model(odd)
    for name in ("bad.pt2", "bad.ts", "bad.safetensors"):
        bad = tmp_path / name
        bad.write_bytes(b"definitely not a model")
        with pytest.raises(ModelError, match=name):
            load_model(bad, input_shape=(3,), factory="saferisk_test_nets:make_mlp")


def test_device_resolution():
    assert resolve_device(None).type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


def test_moving_a_model_keeps_its_dtype_and_bounds_follow_its_device():
    """Model.to(device) must not turn float64 weights into float32 (the GPU path calls it), and
    certified bounds run where the model runs unless the certify config names a device."""
    import types

    from saferisk.bounds import CertifyConfig
    from saferisk.models.model import Model

    graph = load_model(DEMO / "digits_mlp.onnx").graph
    model = Model(graph, dtype=torch.float64).to("cpu")
    assert model.forward_flat(torch.zeros(1, 64)).dtype == torch.float64
    assert all(v.dtype == torch.float64 for n in model.module.graph.nodes for v in n.params.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())
    on_gpu = types.SimpleNamespace(device=torch.device("cuda"))
    assert CertifyConfig().on_device_of(on_gpu).device == "cuda"
    assert CertifyConfig(device="cpu").on_device_of(on_gpu).device == "cpu"
    assert CertifyConfig(method="crown").on_device_of(model).device is None
