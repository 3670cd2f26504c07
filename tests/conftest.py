"""Shared fixtures: ../shared (beside the repo root; tests skip when absent), one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run on a small shared CPU: one intra-op thread is faster and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository root, or skip the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not available (tests that need it are skipped)")
    return SHARED


def build_mlp(weights, biases, activation: str = "relu", name: str = "mlp"):
    """A Model from dense layers in the layout h = x @ W + b (W of shape (in, out)), with
    `activation` after every layer but the last (the DeepQuant .npz convention)."""
    from saferisk.models.graph import Graph, Node
    from saferisk.models.model import Model

    nodes, previous = [], "x"
    for k, (W, b) in enumerate(zip(weights, biases)):
        W = torch.as_tensor(W, dtype=torch.float32)
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1)
        nodes.append(Node("linear", [previous], f"fc{k}", {"weight": W.T.contiguous(), "bias": b}))
        previous = f"fc{k}"
        if k < len(weights) - 1:
            nodes.append(Node(activation, [previous], f"act{k}"))
            previous = f"act{k}"
    n_inputs = int(torch.as_tensor(weights[0]).shape[0])
    return Model(Graph("x", previous, (n_inputs,), nodes), name=name)


def random_mlp(sizes, seed: int = 0, scale: float = 1.0, activation: str = "relu"):
    """A random dense network with layer widths `sizes` (inputs first)."""
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(a, b, generator=gen) * scale / a ** 0.5 for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [torch.randn(b, generator=gen) * 0.1 for b in sizes[1:]]
    return build_mlp(weights, biases, activation)


def paper_net(npz, index: int):
    """ReLU-NN-<index> of ../shared/deepquant_artifacts/reachability_nets.npz as a Model."""
    weights, biases, k = [], [], 1
    while f"relu{index}_W{k}" in npz:
        weights.append(npz[f"relu{index}_W{k}"])
        biases.append(npz[f"relu{index}_b{k}"])
        k += 1
    return build_mlp(weights, biases, "relu", name=f"ReLU-NN-{index}")


@pytest.fixture(scope="session")
def reachability_nets(shared_dir):
    """The npz of the paper's six 2-input ReLU nets (skips when ../shared is absent)."""
    import numpy as np

    path = shared_dir / "deepquant_artifacts" / "reachability_nets.npz"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
