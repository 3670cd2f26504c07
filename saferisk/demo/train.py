"""Train and export the demo models deterministically: `python -m saferisk.demo.train [--out DIR]`.

Same torch version + CPU => byte-identical files (fixed seeds, deterministic algorithms, one
thread, ONNX export through the TorchScript exporter, zip entries with a fixed timestamp). On
another CPU (other SIMD kernels) float rounding differs and training amplifies it: the data and
graph structure stay identical, the weights and outputs only close (tests/test_demo.py).
"""

from __future__ import annotations

import argparse
import io
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from saferisk.demo import DEMO_DIR
from saferisk.demo import nets
from saferisk.io import atomic_write_bytes, atomic_write_json

SPLIT_SEED = 0
TEST_FRACTION = 0.3
TRAIN_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn's digits, pixels scaled to [0, 1] (/16), stratified 70/30 split (seed 0)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def digits_split() -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    X = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return DigitsSplit(X_tr, y_tr, X_te, y_te)


@contextmanager
def deterministic(seed: int) -> Iterator[torch.Generator]:
    """Seeded, deterministic, single-threaded torch inside the block (global settings restored after)."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)


def train_classifier(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, ...],
    *,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = TRAIN_SEED,
) -> nn.Module:
    """Adam on cross-entropy with seeded mini-batch shuffling; returns the model in eval mode."""
    with deterministic(seed) as gen:
        return _train_classifier(model, X, y, input_shape, epochs, batch_size, lr, gen)


def _train_classifier(model, X, y, input_shape, epochs, batch_size, lr, gen) -> nn.Module:
    # re-initialise with the seeded global RNG so the result does not depend on prior RNG use
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    Xt = torch.as_tensor(X, dtype=torch.float32).reshape(-1, *input_shape)
    yt = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, input_shape: tuple[int, ...]) -> float:
    logits = model(torch.as_tensor(X, dtype=torch.float32).reshape(-1, *input_shape))
    return float((logits.argmax(1).numpy() == y).mean())


def regression_target(x: np.ndarray) -> np.ndarray:
    """f(d, s, p) = sin(0.6 d) + 0.5 s^2 + s log10(p / 100), a smooth function on the demo box."""
    d, s, p = x[:, 0], x[:, 1], x[:, 2]
    return np.sin(0.6 * d) + 0.5 * s**2 + s * np.log10(p / 100.0)


def train_regression(n_train: int = 4000, steps: int = 1500, seed: int = TRAIN_SEED) -> tuple[nn.Module, float]:
    """Fit `regression_target` on the box; the input normalisation is folded into layer 1.

    With z = (x - mid) / half the first layer W z + b equals (W / half) x + (b - (W / half) mid).
    Returns the model (raw physical inputs) and its RMSE on 2000 fresh points.
    """
    with deterministic(seed) as gen:
        return _train_regression(n_train, steps, seed, gen)


def _train_regression(n_train: int, steps: int, seed: int, gen: torch.Generator) -> tuple[nn.Module, float]:
    model = nets.regression_net()
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    lo = np.asarray(nets.REGRESSION_LOWER)
    hi = np.asarray(nets.REGRESSION_UPPER)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    rng = np.random.default_rng(seed)
    x_train = lo + (hi - lo) * rng.random((n_train, 3))
    x_test = lo + (hi - lo) * rng.random((2000, 3))
    z = torch.as_tensor((x_train - mid) / half, dtype=torch.float32)
    t = torch.as_tensor(regression_target(x_train), dtype=torch.float32)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (256,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(z[idx]), t[idx])
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        first = model[0]
        half_t = torch.as_tensor(half, dtype=torch.float32)
        mid_t = torch.as_tensor(mid, dtype=torch.float32)
        first.weight.div_(half_t)
        first.bias.sub_(first.weight @ mid_t)
        pred = model(torch.as_tensor(x_test, dtype=torch.float32))[:, 0].double().numpy()
    rmse = float(np.sqrt(np.mean((pred - regression_target(x_test)) ** 2)))
    return model, rmse


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """ONNX opset 17 through the TorchScript exporter (deterministic), dynamic batch axis."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the deterministic one
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return buf.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """An .npz (zip of .npy, deflated) with fixed timestamps, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def train_all(out_dir: Path = DEMO_DIR, *, verbose: bool = True) -> dict[str, float]:
    """Train every demo model and write its files into out_dir; returns the test metrics."""
    from safetensors.torch import save as safetensors_save

    out_dir = Path(out_dir)
    split = digits_split()
    metrics: dict[str, float] = {}

    mlp = train_classifier(nets.digits_mlp(), split.X_train, split.y_train, (64,))
    metrics["digits_mlp_accuracy"] = accuracy(mlp, split.X_test, split.y_test, (64,))
    atomic_write_bytes(out_dir / "digits_mlp.onnx", onnx_bytes(mlp, (64,)))
    state = {k: v.detach().contiguous() for k, v in mlp.state_dict().items()}
    atomic_write_bytes(out_dir / "digits_mlp.safetensors", safetensors_save(state, metadata={"factory": "saferisk.demo.nets:digits_mlp"}))

    cnn = train_classifier(nets.digits_cnn(), split.X_train, split.y_train, (1, 8, 8), epochs=40)
    metrics["digits_cnn_accuracy"] = accuracy(cnn, split.X_test, split.y_test, (1, 8, 8))
    atomic_write_bytes(out_dir / "digits_cnn.onnx", onnx_bytes(cnn, (1, 8, 8)))

    reg, rmse = train_regression()
    metrics["regression_net_rmse"] = rmse
    atomic_write_bytes(out_dir / "regression_net.onnx", onnx_bytes(reg, (3,)))
    atomic_write_json(
        out_dir / "regression_net.json",
        {
            "features": list(nets.REGRESSION_FEATURES),
            "lower": list(nets.REGRESSION_LOWER),
            "upper": list(nets.REGRESSION_UPPER),
            "output": "f = sin(0.6 distance) + 0.5 slope^2 + slope log10(pressure / 100)",
            "output_kind": "regression",
            "test_rmse": round(rmse, 4),
        },
    )
    atomic_write_bytes(out_dir / "digits_test.npz", npz_bytes(X=split.X_test, y=split.y_test))
    if verbose:
        for key, value in metrics.items():
            print(f"{key}: {value:.4f}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="output folder (default: the package's demo folder)")
    args = parser.parse_args(argv)
    train_all(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
