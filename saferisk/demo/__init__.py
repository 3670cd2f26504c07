"""Small demo models shipped with saferisk (trained by `python -m saferisk.demo.train`).

- `digits_mlp.onnx` / `digits_mlp.safetensors`: MLP 64-64-32-10 on scikit-learn's digits.
- `digits_cnn.onnx`: small CNN on the digits as (1, 8, 8) images.
- `regression_net.onnx` + `regression_net.json`: 3-input tanh regression net and its input box.
- `digits_test.npz`: the held-out digits (`X` (N, 64) float64 in [0, 1], `y` int64 labels).
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent

DEMO_FILES = (
    "digits_mlp.onnx",
    "digits_mlp.safetensors",
    "digits_cnn.onnx",
    "regression_net.onnx",
    "regression_net.json",
    "digits_test.npz",
)


def demo_files() -> dict[str, Path]:
    """Name -> path of every shipped demo file (paths may be missing in a broken install)."""
    return {name: DEMO_DIR / name for name in DEMO_FILES}


def demo_path(name: str) -> Path:
    """Path of one demo file; a clear error when it is not part of the demo set or missing."""
    from saferisk.errors import DataError

    if name not in DEMO_FILES:
        raise DataError(f"unknown demo file {name!r}; available: {', '.join(DEMO_FILES)}")
    path = DEMO_DIR / name
    if not path.exists():
        raise DataError(f"demo file {path} is missing; regenerate with `python -m saferisk.demo.train`")
    return path
