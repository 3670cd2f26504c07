"""`saferisk export`: canonical model artifact (model.onnx) + manifest.json from any source."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saferisk.errors import ConfigError, DataError
from saferisk.io import dumps_json
from saferisk.models.load import FORMATS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to the canonical artifact (model.onnx) + manifest.json",
        description="Read a model (ONNX, TorchScript, torch.export .pt2, or a state_dict/.safetensors "
        "with --factory), check the canonical ONNX artifact against the source, write "
        "DIR/model.onnx and DIR/manifest.json, and print the manifest.")
    parser.add_argument("--source", required=True, help="model file")
    parser.add_argument("--format", choices=FORMATS, help="source format (default: from the extension)")
    parser.add_argument("--factory", help="'package.module:function' that builds the nn.Module (state_dict sources)")
    parser.add_argument("--factory-kwargs", default=None, help="JSON object of keyword arguments for the factory")
    parser.add_argument("--input-shape", help="per-sample input shape, e.g. 1,28,28 (torch sources)")
    parser.add_argument("--domain", help="input domain LO,HI (same for every feature), or a .npy (2, n) / .csv "
                        "(lower,upper columns) file of per-feature bounds")
    parser.add_argument("--output-kind", choices=("logits", "probabilities", "regression"), default="logits")
    parser.add_argument("--decision", choices=("argmax", "argmin"), default="argmax")
    parser.add_argument("--class-names", help="comma-separated class names")
    parser.add_argument("--check-inputs", help="inputs to compare source and artifact on: .npy (N, n_inputs) or (N, *input_shape), .npz with X [and y], .csv")
    parser.add_argument("--labels", help="integer labels of the check inputs (.npy/.npz/.csv; reports accuracy); an .npz with y needs none")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="max |source - artifact| allowed, times max(1, max |output|) (default 1e-5)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)


def _check_rows(path: str | None, labels_path: str | None):
    """(X, labels) of --check-inputs (read like an input set: .npy, .npz with X [and y], .csv)
    and --labels; None where not given."""
    if path is None:
        if labels_path is not None:
            raise ConfigError("--labels needs --check-inputs (the labels belong to those inputs)")
        return None, None
    from saferisk.commands.common import load_labels
    from saferisk.data.spec import load_path

    inputs = load_path(path)  # rows checked finite by the reader
    labels = inputs.labels
    if labels_path is not None:
        labels = load_labels(labels_path)
        if len(labels) != len(inputs):
            raise DataError(f"{len(inputs)} check inputs in {path} but {len(labels)} labels in {labels_path}")
    return inputs.X, labels


def _parse_domain(text: str | None):
    if text is None:
        return None
    if text.lower().endswith((".npy", ".csv")):
        from saferisk.data.domain import load_domain_file

        domain = load_domain_file(text)
        return {"lower": domain.lower_array.tolist(), "upper": domain.upper_array.tolist()}
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--domain '{text}' must be LO,HI (two numbers)") from None
    return [lo, hi]


def build_source(args: argparse.Namespace) -> dict:
    try:
        kwargs = json.loads(args.factory_kwargs) if args.factory_kwargs else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--factory-kwargs is not valid JSON: {exc}") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigError("--factory-kwargs must be a JSON object")
    source = {"path": args.source, "format": args.format, "factory": args.factory, "factory_kwargs": kwargs,
              "input_shape": args.input_shape, "domain": _parse_domain(args.domain),
              "output_kind": args.output_kind, "decision": args.decision,
              "class_names": args.class_names.split(",") if args.class_names else None}
    return {k: v for k, v in source.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from saferisk.steps.export import export_step

    check_inputs, labels = _check_rows(args.check_inputs, args.labels)
    manifest = export_step(build_source(args), str(Path(args.out)), check_inputs=check_inputs, labels=labels,
                           tolerance=args.tolerance)
    sys.stdout.write(dumps_json(manifest))
    return 0
