"""The shipped demo models: they load, reach the stated accuracy, and retrain byte-identically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saferisk.demo import DEMO_FILES, demo_files, demo_path
from saferisk.errors import DataError

ort = pytest.importorskip("onnxruntime")


def _test_set():
    with np.load(demo_path("digits_test.npz")) as data:
        return data["X"], data["y"]


def _ort_outputs(name: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(demo_path(name)), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def test_demo_files_exist_and_are_small():
    files = demo_files()
    assert set(files) == set(DEMO_FILES)
    assert all(path.exists() for path in files.values())
    assert sum(path.stat().st_size for path in files.values()) < 1_000_000


def test_test_set_layout():
    X, y = _test_set()
    assert X.dtype == np.float64 and X.ndim == 2 and X.shape[1] == 64
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert y.dtype == np.int64 and y.shape == (X.shape[0],) and set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("name, shape", [("digits_mlp.onnx", (64,)), ("digits_cnn.onnx", (1, 8, 8))])
def test_digits_models_accuracy(name, shape):
    X, y = _test_set()
    logits = _ort_outputs(name, X.reshape(-1, *shape))
    assert logits.shape == (len(y), 10)
    assert (logits.argmax(1) == y).mean() >= 0.95


def test_safetensors_matches_onnx_through_factory():
    import torch
    from safetensors.torch import load_file

    from saferisk.demo.nets import digits_mlp

    model = digits_mlp()
    model.load_state_dict(load_file(str(demo_path("digits_mlp.safetensors"))))
    X, _ = _test_set()
    with torch.no_grad():
        ours = model(torch.as_tensor(X[:50], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(ours, _ort_outputs("digits_mlp.onnx", X[:50]), atol=1e-5)


def test_regression_net_fits_its_function_on_its_box():
    from saferisk.demo.train import regression_target

    box = json.loads(demo_path("regression_net.json").read_text())
    lower, upper = np.asarray(box["lower"]), np.asarray(box["upper"])
    assert lower.shape == upper.shape == (3,) and (lower < upper).all()
    x = lower + (upper - lower) * np.random.default_rng(1).random((500, 3))
    pred = _ort_outputs("regression_net.onnx", x)[:, 0]
    assert np.sqrt(np.mean((pred - regression_target(x)) ** 2)) < 0.05


def test_unknown_demo_file_is_a_clear_error():
    with pytest.raises(DataError, match="unknown demo file"):
        demo_path("nope.onnx")


def test_retraining_is_byte_identical(tmp_path):
    from saferisk.demo.train import train_all

    metrics = train_all(tmp_path, verbose=False)
    assert metrics["digits_mlp_accuracy"] >= 0.95 and metrics["digits_cnn_accuracy"] >= 0.95
    for name, shipped in demo_files().items():
        assert (tmp_path / name).read_bytes() == shipped.read_bytes(), f"{name} differs after retraining"


def test_training_restores_global_torch_settings():
    import torch

    from saferisk.demo.nets import digits_mlp_small
    from saferisk.demo.train import digits_split, train_classifier

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    split = digits_split()
    train_classifier(digits_mlp_small(), split.X_train[:64], split.y_train[:64], (64,), epochs=1)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
