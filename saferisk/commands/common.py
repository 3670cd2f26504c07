"""Argument helpers shared by the CLI commands (parsing lists, domains, inputs, JSON output)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from saferisk.data.domain import Domain, load_domain_file
from saferisk.errors import ConfigError, DataError
from saferisk.io import dumps_json


def parse_floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def parse_ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None


def add_model_args(parser) -> None:
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="model file: ONNX (.onnx, any opset >= 7), TorchScript (.pt/.ts) or torch.export (.pt2)")
    parser.add_argument("--input-shape", metavar="D,D,...", help="per-sample input shape, e.g. 1,28,28: needed "
                        "for TorchScript files; overrides a symbolic ONNX input shape")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available); default cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_domain_args(parser) -> None:
    parser.add_argument("--domain", metavar="LO,HI", help="input domain for every feature, e.g. --domain=0,1 "
                        "(use '=' before negative numbers: --domain=-1,1); default unbounded")
    parser.add_argument("--domain-file", metavar="F", help="per-feature domain: .npy of shape (2, n) or a CSV "
                        "with lower,upper columns, one row per feature")


def load_model_arg(args):
    from saferisk.models import load_model

    if args.threads:
        torch.set_num_threads(int(args.threads))
    shape = parse_ints(args.input_shape, "--input-shape") if getattr(args, "input_shape", None) else None
    return load_model(args.model, device=args.device, input_shape=shape)


def domain_from_args(args, n: int) -> Domain | None:
    """The domain of --domain / --domain-file; None when neither is given (the input set's
    own domain applies, else none)."""
    if args.domain and args.domain_file:
        raise ConfigError("give either --domain or --domain-file, not both")
    if args.domain_file:
        return load_domain_file(args.domain_file, n)
    if args.domain:
        bounds = parse_floats(args.domain, "--domain")
        if len(bounds) != 2:
            raise ConfigError(f"--domain needs two numbers LO,HI, got {args.domain!r}")
        return Domain.from_bounds(bounds[0], bounds[1], n)
    return None


def load_labels(path: str) -> np.ndarray:
    """Integer labels, one per input, from .npy, .npz (array y or labels) or a one-column .csv."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file not found: {path}")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                key = next((k for k in ("y", "labels") if k in data), None)
                if key is None:
                    raise DataError(f"labels file {path}: no array named y or labels (has {list(data.keys())})")
                arr = data[key]
        elif p.suffix == ".csv":
            arr = np.loadtxt(p, delimiter=",", ndmin=1)
        else:
            raise DataError(f"labels file {path}: unsupported extension {p.suffix!r} (use .npy, .npz or .csv)")
        values = np.asarray(arr, dtype=np.float64).reshape(-1)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"labels file {path}: cannot read ({type(exc).__name__}: {exc})") from None
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise DataError(f"labels file {path}: labels must be whole numbers")
    return values.astype(np.int64)


def print_json(obj) -> None:
    sys.stdout.write(dumps_json(obj))
