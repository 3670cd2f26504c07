"""No fragile witnesses (issue 25): on small networks built from torch.nn as a user would
(BatchNorm with non-trivial running statistics, eval-mode Dropout, a squeeze-excite block, a
ResNet-style CNN with skip connections), exported with torch.onnx.export and loaded like any
ONNX file, every witness changes the decision in onnxruntime (run here directly, float32) and
in the user's own torch module in float64, each by more than the stated witness tolerance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from saferisk.data.domain import Domain
from saferisk.models.load import load_model
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search import SearchConfig
from saferisk.witness_file import WitnessStore, witness_key

ort = pytest.importorskip("onnxruntime")

SEARCH = SearchConfig(budget=4000, max_iterations=20, n_random=64, gradient_steps=10, shrink_steps=4)
INPUTS = 7
MAX_RADIUS = {"inf": 1.0, "2": 4.0}  # the box is [-1, 1]


class SqueezeExcite(nn.Module):
    """Conv, then a squeeze-excite gate (global pooling, FC, ReLU, FC, sigmoid, channel multiply)."""

    def __init__(self, channels: int = 6, reduced: int = 2, classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.squeeze = nn.Linear(channels, reduced)
        self.excite = nn.Linear(reduced, channels)
        self.head = nn.Linear(channels * 36, classes)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3))))))
        return self.head((y * gate[:, :, None, None]).flatten(1))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity or 1x1-conv shortcut (ResNet basic block)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


NETS = {
    "batchnorm-mlp": (lambda: nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16),
                                            nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)), (8,)),
    "dropout-mlp": (lambda: nn.Sequential(nn.Linear(8, 24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 24), nn.ReLU(),
                                          nn.Dropout(0.2), nn.Linear(24, 4)), (8,)),
    "squeeze-excite": (SqueezeExcite, (1, 6, 6)),
    "resnet-cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                         ResidualBlock(4, 4, 1), ResidualBlock(4, 8, 2), nn.AdaptiveAvgPool2d(1),
                                         nn.Flatten(), nn.Linear(8, 5)), (1, 6, 6)),
}


def _seeded(name: str) -> nn.Module:
    """The net with seeded weights (2x the default init) and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    module = NETS[name][0]()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(2.0)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module.eval()


def _export(module: nn.Module, shape: tuple[int, ...], path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, *shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def _changed_by(z: np.ndarray, decision: int) -> float:
    """How far the decision has changed: max_{i != decision} z_i - z_decision (> 0: changed)."""
    return float(np.max(np.delete(z, decision)) - z[decision])


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_witness_changes_the_decision_in_onnxruntime_and_float64_beyond_the_tolerance(name, tmp_path):
    module, shape = _seeded(name), NETS[name][1]
    path = tmp_path / f"{name}.onnx"
    _export(module, shape, path)
    model = load_model(path)
    assert model.evaluator == "torch"  # the gradient path; onnxruntime is the independent runtime
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module64 = _seeded(name).double()
    domain = Domain.scalar(-1.0, 1.0, model.n_inputs)
    X = torch.rand(INPUTS, *shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    checked, fragile = 0, []
    for norm, max_radius in MAX_RADIUS.items():
        for i in range(INPUTS):
            store = WitnessStore()
            result = compute_radius(model, X[i].reshape(-1).double().numpy(), Robustness(), norm, max_radius, domain,
                                    search=SEARCH, certify=False, input_id=str(i), witness_store=store)
            if result.radius_upper is None:
                continue
            x = store.arrays[witness_key(str(i))].reshape(1, *shape)
            tolerance = result.extra["witness_margin_required"]
            assert tolerance > 0 and result.extra["witness_margin"] > tolerance
            assert result.extra["witness_rechecked_by"] == "torch+onnxruntime+float64"
            distance = np.abs(x - X[i].numpy()).max() if norm == "inf" else np.linalg.norm((x - X[i].numpy()).ravel())
            assert distance == pytest.approx(result.radius_upper, rel=1e-6, abs=1e-7)  # the witness's own radius
            assert np.all(x >= -1) and np.all(x <= 1)
            decision = int(session.run(None, {"input": X[i : i + 1].numpy()})[0][0].argmax())
            z_ort = session.run(None, {"input": x.astype(np.float32)})[0][0]
            with torch.no_grad():
                z64 = module64(torch.from_numpy(x)).numpy()[0]
            margins = (_changed_by(z_ort, decision), _changed_by(z64, decision))
            if not min(margins) > tolerance:
                fragile.append((norm, i, margins, tolerance))
            checked += 1
    assert checked >= INPUTS, f"{name}: too few witnesses to check ({checked})"
    assert not fragile, f"{name}: fragile witnesses (norm, input, (onnxruntime, float64) margins, tolerance): {fragile}"
