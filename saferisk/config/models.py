"""Parse-time checks of a `models.<name>` entry: the source exists, its format is known and
has what it needs (factory, input_shape), and its per-sample feature count (to catch a model
paired with data of the wrong shape). numpy/onnx only: no model is built here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from saferisk.data.spec import resolve_path
from saferisk.errors import ConfigError


def model_format(path: Path, declared: str, key: str) -> str:
    """The model's format: the declared one, else the loader's inference (extension; a .pt is
    a TorchScript archive when it holds code/, else a state_dict that needs a factory)."""
    if declared != "auto":
        return declared
    from saferisk.errors import ModelError
    from saferisk.models.formats import infer_format

    try:
        return infer_format(path)
    except ModelError as exc:
        raise ConfigError(f"{key}.format: {exc}") from None


def onnx_input_features(path: Path, key: str) -> int:
    """Features per sample (prod of the input dims after the batch dim) of the first
    non-initializer ONNX input; a symbolic per-sample dim needs input_shape in the config."""
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
    return int(math.prod(per_sample))


def model_source(spec: dict[str, Any], base: Path, key: str) -> tuple[Path, str, int | None]:
    """(source path, format, features per sample or None when not known before export)."""
    source = resolve_path(spec["source"], base)
    if not source.exists():
        raise ConfigError(f"{key}.source: model file not found: {source}")
    fmt = model_format(source, spec["format"], key)
    if fmt in ("safetensors", "state_dict") and not spec["factory"]:
        raise ConfigError(f"{key}.factory: a {fmt} source needs a factory 'module:function' that builds the network")
    if fmt == "torchscript" and not spec["input_shape"]:
        raise ConfigError(f"{key}.input_shape: a TorchScript model needs its per-sample input shape, e.g. [1, 28, 28]")
    if spec["factory"] and not spec["input_shape"]:
        raise ConfigError(f"{key}.input_shape: a factory-built model needs its per-sample input shape, e.g. [64]")
    if spec["input_shape"]:
        return source, fmt, int(math.prod(spec["input_shape"]))
    if fmt == "onnx":
        return source, fmt, onnx_input_features(source, key)
    return source, fmt, None
