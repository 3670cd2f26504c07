"""Cheap looks at models and input sets at config-parse time (numpy/onnx only, no torch).

The workflow needs, before any job runs: the number of input features of each model and
input set (to catch a model paired with data of the wrong shape), how many rows an input set
selects (to know its shards), and a fingerprint of each shard's rows (a job parameter, so
appending rows reruns only the new shard, and touching a file reruns nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saferisk.errors import ConfigError

DEMO_PREFIX = "demo:"
X_KEYS = ("X", "x", "inputs")  # the same defaults as saferisk.data.inputs
LABEL_KEYS = ("y", "labels", "label", "Y")


def resolve_path(value: str, base: Path, key: str) -> Path:
    """A config path: `demo:<file>` (shipped with saferisk) or relative to `base`."""
    if value.startswith(DEMO_PREFIX):
        from saferisk.demo import DEMO_DIR

        return DEMO_DIR / value[len(DEMO_PREFIX):]
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def model_format(path: Path, declared: str, key: str) -> str:
    """The model's format: the declared one, else the loader's inference (extension; a .pt is
    a TorchScript archive when it holds code/, else a state_dict that needs a factory)."""
    if declared != "auto":
        return declared
    from saferisk.errors import ModelError
    from saferisk.models.load import infer_format

    try:
        return infer_format(path)
    except ModelError as exc:
        raise ConfigError(f"{key}.format: {exc}") from None


def onnx_input_features(path: Path, key: str) -> tuple[int, list[int]]:
    """(features per sample, declared input dims) of the first non-initializer ONNX input.

    The first dimension is the batch dimension (symbolic or fixed); features = prod(rest).
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ConfigError(f"{key}: {path} is not a readable ONNX model ({exc})") from None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not inputs:
        raise ConfigError(f"{key}: {path} has no graph input")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    per_sample = dims[1:] if len(dims) > 1 else dims
    if any(d <= 0 for d in per_sample):
        raise ConfigError(f"{key}: {path} has a symbolic input shape {dims}; set input_shape in the config")
    return int(math.prod(per_sample)), dims


def onnx_output_count(path: Path) -> int | None:
    """Number of outputs per sample declared by the ONNX file, or None when symbolic."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in proto.graph.output[0].type.tensor_type.shape.dim]
    rest = dims[1:] if len(dims) > 1 else dims
    return int(math.prod(rest)) if rest and all(d > 0 for d in rest) else None


@dataclass
class InputSetInfo:
    """What the plan needs to know about an input set before any job runs."""

    n_rows: int  # selected rows
    n_features: int | None  # None when it cannot be told cheaply
    has_labels: bool
    row_digests: list[str] = field(default_factory=list)  # one per selected row
    positions: list[int] = field(default_factory=list)  # source row of each selected row (box: 0 = centre)
    source: Path | None = None
    box: dict[str, list[float]] | None = None

    def shard_fingerprint(self, start: int, stop: int) -> str:
        h = hashlib.sha256()
        for digest in self.row_digests[start:stop]:
            h.update(digest.encode())
        return h.hexdigest()[:16]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def read_box(box: Any, base: Path, key: str) -> dict[str, list[float]]:
    """{lower, upper} lists from a config mapping, a JSON file holding them, or the input box
    of a VNN-LIB specification (.vnnlib)."""
    if isinstance(box, str):
        path = resolve_path(box, base, key)
        if not path.exists():
            raise ConfigError(f"{key}: box file not found: {path}")
        if path.suffix.lower() == ".vnnlib":
            from saferisk.data.vnnlib import load_vnnlib
            from saferisk.errors import DataError

            try:
                spec = load_vnnlib(path)
            except DataError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            return {"lower": np.asarray(spec.lower, dtype=np.float64).tolist(),
                    "upper": np.asarray(spec.upper, dtype=np.float64).tolist()}
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}: {path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "lower" not in data or "upper" not in data:
            raise ConfigError(f"{key}: {path} must hold 'lower' and 'upper' lists")
        box = data
    lower = np.atleast_1d(np.asarray(box["lower"], dtype=np.float64))
    upper = np.atleast_1d(np.asarray(box["upper"], dtype=np.float64))
    if lower.size == 1 and upper.size > 1:
        lower = np.full_like(upper, lower[0])
    if upper.size == 1 and lower.size > 1:
        upper = np.full_like(lower, upper[0])
    if lower.shape != upper.shape:
        raise ConfigError(f"{key}: lower has {lower.size} values, upper has {upper.size}")
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()) or (lower > upper).any():
        raise ConfigError(f"{key}: the box needs finite bounds with lower <= upper")
    return {"lower": lower.tolist(), "upper": upper.tolist()}


def _select_positions(n_total: int, selection: dict | None, labels: np.ndarray | None, seed: int,
                      key: str) -> np.ndarray:
    if not selection:
        return np.arange(n_total)
    if "first" in selection:
        return np.arange(min(int(selection["first"]), n_total))
    if "indices" in selection:
        idx = np.asarray(selection["indices"], dtype=np.int64)
        bad = idx[idx >= n_total]
        if bad.size:
            raise ConfigError(f"{key}.selection.indices: index {int(bad[0])} is out of range for {n_total} rows")
        return idx
    if labels is None:
        raise ConfigError(f"{key}.selection.per_class needs labels, and this input set has none")
    from saferisk.data.inputs import InputSet, select_stratified  # exact same draw as the loader

    fake = InputSet("peek", np.zeros((n_total, 1)), labels=labels)
    chosen = select_stratified(fake, int(selection["per_class"]), seed)
    return np.asarray([int(i) for i in chosen.ids], dtype=np.int64)


def _check_values(X2: np.ndarray, positions, path: Path, key: str) -> None:
    """The selected rows are finite numbers (checked when the config is read, before any job)."""
    try:
        rows = np.asarray(X2[list(positions)], dtype=np.float64)
    except (ValueError, TypeError):
        raise ConfigError(f"{key}.path: {path}: the inputs are not numbers (array dtype {X2.dtype})") from None
    bad = np.argwhere(~np.isfinite(rows))
    if len(bad):
        r, c = (int(v) for v in bad[0])
        raise ConfigError(f"{key}.path: {path}: row {int(positions[r])} feature {c} is {rows[r, c]} "
                          "(NaN/inf is not a valid input)")


def peek_input_set(spec: dict[str, Any], base: Path, seeds: dict[str, int], key: str) -> InputSetInfo:
    """Rows, features, labels and per-row digests of an input set (after selection)."""
    if spec.get("box") is not None or spec.get("format") == "box":
        if spec.get("box") is None:
            raise ConfigError(f"{key}.box: format 'box' needs a box ({{lower, upper}} or a JSON file)")
        box = read_box(spec["box"], base, f"{key}.box")
        n_total = 1 + int(spec.get("samples", 0))
        pos = _select_positions(n_total, spec.get("selection"), None, 0, key)
        d = _digest(json.dumps(box, sort_keys=True).encode(), str(seeds.get("samples", 0)).encode())
        src = resolve_path(spec["box"], base, key) if isinstance(spec["box"], str) else None
        return InputSetInfo(len(pos), len(box["lower"]), False, [f"{d}:{int(i)}" for i in pos],
                            [int(i) for i in pos], src, box)
    if not spec.get("path"):
        raise ConfigError(f"{key}: give a `path` (data file or PNG folder) or a `box`")
    path = resolve_path(spec["path"], base, f"{key}.path")
    if not path.exists():
        raise ConfigError(f"{key}.path: not found: {path}")
    fmt = spec.get("format", "auto")
    if fmt == "auto":
        fmt = "png" if path.is_dir() else path.suffix.lower().lstrip(".")
    label_key = spec.get("labels")
    if fmt in ("npz", "npy"):
        try:
            if fmt == "npy":
                X = np.load(path, mmap_mode="r", allow_pickle=False)
                labels = None
            else:
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files}
                xk = next((k for k in X_KEYS if k in arrays), None)
                if xk is None:
                    raise ConfigError(f"{key}.path: {path} has no inputs array (looked for {', '.join(X_KEYS)})")
                X = arrays[xk]
                lk = label_key if label_key else next((k for k in LABEL_KEYS if k in arrays), None)
                if label_key and label_key not in arrays:
                    raise ConfigError(f"{key}.labels: {path} has no array {label_key!r}; arrays: {', '.join(sorted(arrays))}")
                labels = None if lk is None else np.asarray(arrays[lk]).reshape(-1)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{key}.path: {path} is not a readable {fmt} file ({exc})") from None
        X = np.asarray(X)
        if X.size == 0:
            raise ConfigError(f"{key}.path: {path} holds no inputs (array of shape {X.shape})")
        X2 = X.reshape(X.shape[0], -1) if X.ndim > 1 else X.reshape(1, -1)
        pos = _select_positions(X2.shape[0], spec.get("selection"), labels, seeds.get("selection", 0), key)
        _check_values(X2, pos, path, key)
        digests = [_digest(np.ascontiguousarray(X2[p]).tobytes(),
                           b"" if labels is None else str(int(labels[p])).encode()) for p in pos]
        return InputSetInfo(len(pos), int(X2.shape[1]), labels is not None, digests, [int(p) for p in pos], path)
    if fmt == "csv":
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        if len(lines) < 2:
            raise ConfigError(f"{key}.path: {path} has no data rows")
        header = [c.strip() for c in lines[0].split(",")]
        if label_key and label_key not in header:
            raise ConfigError(f"{key}.labels: {path} has no column {label_key!r}; columns: {', '.join(header)}")
        n_features = len(header) - (1 if label_key else 0)
        rows = lines[1:]
        labels = None
        if label_key and spec.get("selection") and "per_class" in spec["selection"]:
            col = header.index(label_key)
            labels = np.asarray([int(float(r.split(",")[col])) for r in rows])
        pos = _select_positions(len(rows), spec.get("selection"), labels, seeds.get("selection", 0), key)
        return InputSetInfo(len(pos), n_features, bool(label_key), [_digest(rows[p].encode()) for p in pos],
                            [int(p) for p in pos], path)
    if fmt == "png":
        if not path.is_dir():
            raise ConfigError(f"{key}.path: a png input set is a folder of images, got {path}")
        files = sorted((f for f in path.rglob("*") if f.is_file() and f.suffix.lower() == ".png"),
                       key=lambda f: f.relative_to(path).as_posix())
        if not files:
            raise ConfigError(f"{key}.path: no PNG images in {path}")
        has_labels = bool(label_key) or any(f.parent != path for f in files)
        if spec.get("selection") and "per_class" in spec["selection"]:
            raise ConfigError(f"{key}.selection.per_class is not supported for png folders; use first or indices")
        pos = _select_positions(len(files), spec.get("selection"), None, 0, key)
        n_features = None
        try:
            from PIL import Image

            with Image.open(files[0]) as im:
                channels = 1 if im.mode in ("L", "1", "I", "I;16", "LA", "P") else 3
                n_features = im.width * im.height * channels if im.mode in ("L", "RGB", "1") else None
        except Exception:
            n_features = None
        digests = [_digest(files[p].relative_to(path).as_posix().encode(), files[p].read_bytes()) for p in pos]
        return InputSetInfo(len(pos), n_features, has_labels, digests, [int(p) for p in pos], path)
    raise ConfigError(f"{key}.format: cannot read {path.name} as {fmt!r}; choose one of: npy, npz, csv, png, box")
