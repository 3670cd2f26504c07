"""Model source formats: their names, the extensions they are inferred from, per-sample input
shapes (torch-free: the workflow's config checks read them without loading torch; the loaders
are in saferisk.models.load)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from saferisk.errors import ConfigError, ModelError

FORMATS = ("onnx", "torchscript", "torch_export", "state_dict", "safetensors")
TORCH_FORMATS = ("torchscript", "torch_export", "state_dict", "safetensors")
_EXTENSIONS = {".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript", ".pt2": "torch_export",
               ".safetensors": "safetensors", ".pth": "state_dict", ".bin": "state_dict", ".pt": None}


def parse_shape(shape: Any) -> tuple[int, ...] | None:
    """'1,8,8' / [1, 8, 8] -> (1, 8, 8); per-sample, no batch dimension."""
    if shape is None:
        return None
    if isinstance(shape, str):
        parts = [p for p in shape.replace("x", ",").split(",") if p.strip()]
    else:
        parts = list(shape)
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape {shape!r} is not a list of positive integers") from None
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"input_shape {shape!r} is not a list of positive integers")
    return dims


def infer_format(path: str | Path) -> str:
    """The source format from the extension (and, for .pt, from the archive's content)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ModelError(f"{path}: unknown model extension '{suffix}' (known: {', '.join(sorted(_EXTENSIONS))}); "
                         "pass format= one of " + ", ".join(FORMATS))
    fmt = _EXTENSIONS[suffix]
    if fmt is None:  # .pt: TorchScript archive or torch.save'd state_dict
        fmt = "torchscript" if _is_torchscript_archive(path) else "state_dict"
    return fmt


def _is_torchscript_archive(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def check_format(fmt: str | None, path: str | Path) -> str:
    """`fmt` validated, or inferred from the file when None / 'auto'."""
    if fmt is None or fmt == "auto":
        return infer_format(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown model format '{fmt}' (known: {', '.join(FORMATS)})")
    return fmt
