"""`saferisk init MODEL [--inputs DATA] [--out FILE]`: a first audit config.

Inspects the model (format, input shape, number of outputs) and the data, and writes a
commented config with sensible defaults:
  classifier (several outputs)  -> robustness (L-inf) + uncertainty on the data;
  one output (regression)       -> reachability over the domain box (allowed output range
                                   taken from the observed outputs, widened; EDIT it).
DATA may be .npy/.npz/.csv, a PNG folder, or a VNN-LIB file / box JSON (a region). The
written file passes `saferisk validate-config`; the command prints what to run next. By default
it is audits/<name>/config/config.yaml, run by `snakemake --directory audits/<name>` into
audits/<name>/results/: the default audit's results/ stay untouched (`saferisk audit` does
all of this and runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path

import numpy as np

from saferisk import layout
from saferisk.config.plan import DEFAULT_CONFIG
from saferisk.errors import ConfigError
from saferisk.io import atomic_write_bytes

FORMAT_NAMES = {".onnx": "ONNX", ".pt2": "torch.export", ".ts": "TorchScript", ".pt": "TorchScript / state_dict",
                ".safetensors": "safetensors", ".pth": "state_dict"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("init", help="write a commented audit config for a model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", help="config file to write, run with `snakemake --configfile FILE` into results/ "
                        "(default: audits/<name>/config/config.yaml, run with `snakemake --directory audits/<name>` "
                        "into audits/<name>/results/, beside the default audit)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(func=run)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, its data and the defaults of the written config (shared with `saferisk audit`)."""
    parser.add_argument("model", help="model file (.onnx, .pt, .pt2, .safetensors)")
    parser.add_argument("--inputs", help="input data (.npy/.npz/.csv, PNG folder, .vnnlib or box .json)")
    parser.add_argument("--name", help="model name in the config (default: from the file name)")
    parser.add_argument("--factory", help="module:function building the network (state_dict / safetensors)")
    parser.add_argument("--input-shape", nargs="+", metavar="D",
                        help="per-sample input shape (torch sources), e.g. 1,28,28 (or 1 28 28)")
    parser.add_argument("--decision", choices=("argmax", "argmin"), default="argmax",
                        help="classifier decision rule (argmin for e.g. ACAS Xu)")
    parser.add_argument("--domain", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="input domain for every feature (default: [0, 1] for data in [0, 1], "
                             "else the data's range per feature)")
    parser.add_argument("--max-inputs", type=int, default=32, help="inputs audited (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=8,
                        help="points drawn inside a box input set (default: %(default)s)")
    parser.add_argument("--budget", type=int, default=20000,
                        help="search budget (forward evaluations) per input (default: %(default)s)")
    parser.add_argument("--certify-work", type=int, default=200,
                        help="work budget of the certified lower bound per input, in bound passes: the same "
                             "result on any machine (default: %(default)s)")
    parser.add_argument("--max-radius", type=float, help="largest radius searched (default: 0.1 in input "
                        "units for data in [0, 1], else 0.1 of the domain width)")


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text)
    out = out.strip("_") or "model"
    return out if out[0].isalpha() else f"m_{out}"


def config_name(args) -> str:
    """The model's name in the config: --name, else from the model file's name."""
    return _slug(args.name or Path(args.model).stem)


def _inspect_model(args) -> dict:
    from saferisk.models import load_model

    kwargs = {}
    if args.factory:
        kwargs["factory"] = args.factory
    if args.input_shape:
        from saferisk.commands.common import parse_ints

        kwargs["input_shape"] = parse_ints(",".join(args.input_shape), "--input-shape")
    model = load_model(args.model, **kwargs)
    import torch

    from saferisk.models.onnx_reader import output_meaning

    activation, rank = output_meaning(model.onnx_bytes) if model.onnx_bytes is not None else (None, 2)
    return {"input_shape": list(model.input_shape), "n_inputs": int(model.n_inputs),
            "n_outputs": int(model.n_outputs), "format": FORMAT_NAMES.get(Path(args.model).suffix.lower(), "model"),
            "activation": activation, "output_rank": rank, "evaluator": model.evaluator,
            "forward": lambda X: model.forward_flat(torch.as_tensor(X, dtype=torch.float32)).double().numpy()}


def _output_kind(info: dict, model_path) -> tuple[str, str]:
    """(kind, why): 'classifier' (logits), 'probabilities' (final Softmax), 'binary' (one sigmoid
    output) or 'regression', read from the graph's last operation and output shape."""
    if info["output_rank"] > 2:
        raise ConfigError(f"{model_path}: the model's output has {info['output_rank'] - 1} dimensions per sample "
                          "(dense per-position outputs, e.g. segmentation): saferisk init writes classifier and "
                          "regression audits only; write a property for such outputs yourself (a `custom` or "
                          "`reachability` property on the outputs that matter, config/README.md)")
    activation, n_outputs = info["activation"], info["n_outputs"]
    if n_outputs == 1:
        if activation == "sigmoid":
            return "binary", "one sigmoid output: a binary classifier deciding at 0.5"
        return "regression", "one output"
    if activation == "softmax":
        return "probabilities", "the graph ends in Softmax: the outputs are probabilities (no second softmax)"
    if activation == "sigmoid":
        return "probabilities", "the graph ends in Sigmoid: per-class probabilities"
    if activation == "log_softmax":
        return "classifier", "the graph ends in LogSoftmax: log-probabilities, used as logits"
    return "classifier", f"{n_outputs} outputs, no final Softmax/Sigmoid: logits"


def _inspect_inputs(path: str, max_inputs: int) -> dict:
    """Rows (first max_inputs), labels, box of the data file."""
    from saferisk.data.spec import load_path

    data = load_path(path)
    if data.is_box:
        return {"X": data.X, "labels": None, "box": (data.box_lower, data.box_upper), "n_rows": 1}
    return {"X": data.X[:max_inputs], "labels": data.labels, "box": None, "n_rows": len(data)}


def _fmt_list(values) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _domain(args, data: dict | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(lower, upper, why): explicit, [0, 1] for image-like data, the box, or the data's range."""
    X = None if data is None else data["X"]
    if args.domain:
        return np.full(n, args.domain[0]), np.full(n, args.domain[1]), "from --domain"
    if data is not None and data["box"] is not None:
        return data["box"][0], data["box"][1], "the input box"
    if X is not None and X.min() >= 0 and X.max() <= 1:
        return np.zeros(n), np.ones(n), "data in [0, 1] (pixels?)"
    if X is not None:
        return X.min(axis=0), X.max(axis=0), "observed range of the data: EDIT to the physical range"
    return np.zeros(n), np.ones(n), "a guess ([0, 1]): EDIT to the real input range"


def config_path(path: str, workdir: Path | None) -> str:
    """`path` (as typed, relative to the current directory) as a config run in `workdir` must
    spell it: unchanged without a workdir; else relative to it when the file is inside the
    current directory (the checkout moves as a whole), absolute otherwise."""
    if workdir is None:
        return str(Path(path))
    target = Path(path).resolve()
    if not target.is_relative_to(Path.cwd().resolve()):
        return str(target)
    return os.path.relpath(target, Path(workdir).resolve())


def _model_lines(args, info: dict, name: str, kind: str, kind_note: str, domain_yaml: str, domain_note: str,
                 workdir: Path | None) -> list[str]:
    n = info["n_inputs"]
    check = ("# Check it with `saferisk validate-config <this file>`; every key: config/README.md." if workdir is None
             else "# Its paths start from the audit's folder (above config/): check it there with "
                  "`saferisk validate-config`;\n# every key: config/README.md.")
    lines = [
        f"# saferisk audit config for {args.model}, written by `saferisk {getattr(args, 'command', None) or 'init'}`.",
        f"# Model: {info['format']}, input shape {info['input_shape']} ({n} features), "
        f"{info['n_outputs']} output(s) -> {'classifier' if kind != 'regression' else 'regression'} defaults ({kind_note}).",
        check,
        "",
        "models:",
        f"  {name}:",
        f"    source: {json.dumps(config_path(args.model, workdir))}",
    ]
    if args.factory:
        lines.append(f"    factory: {args.factory}")
    if args.input_shape:
        lines.append(f"    input_shape: {info['input_shape']}")
    output_kind = {"classifier": "logits", "probabilities": "probabilities", "binary": "probabilities"}.get(kind, "regression")
    lines += [f"    domain: {domain_yaml}  # {domain_note}", f"    output_kind: {output_kind}"]
    if kind in ("classifier", "probabilities"):
        lines.append(f"    decision: {args.decision}  # argmin for networks that pick the smallest output")
    return lines + ["    input_sets: [inputs]"]


def _input_set_lines(args, data: dict | None, lo, hi, domain_yaml: str, unit_box: bool,
                     workdir: Path | None) -> list[str]:
    lines = ["", "input_sets:", "  inputs:"]
    if data is not None and data["box"] is None:
        lines.append(f"    path: {json.dumps(config_path(args.inputs, workdir))}")
        lines.append(f"    selection: {{first: {min(args.max_inputs, data['n_rows'])}}}  # of {data['n_rows']} rows")
        if not unit_box:
            lines.append(f"    domain: {domain_yaml}")
        return lines
    box = data["box"] if data is not None else (lo, hi)
    lines.append(f"    box: {{lower: {_fmt_list(box[0])}, upper: {_fmt_list(box[1])}}}  # the region audited")
    lines.append(f"    samples: {args.samples}  # points drawn in the box besides its centre")
    return lines


def _property_lines(args, info: dict, kind: str, X, lo, hi, scale: str) -> tuple[list[str], list[str]]:
    """(properties block, criteria lines) for the model kind."""
    max_radius = args.max_radius or 0.1
    budget = (f"search: {{mode: fast, budget: {args.budget}}}\n"
              f"    certify: {{work_budget: {args.certify_work}}}  # bound passes per input: the same result on any machine")

    def prop(name: str, comment: str, params: str | None, prop_scale: str) -> list[str]:
        return [f"  {name}:  # {comment}", f"    kind: {name}", *([f"    params: {params}"] if params else []),
                "    norms: [inf]", f"    max_radius: {max_radius}", f"    scale: {prop_scale}", f"    {budget}"]

    robustness_criterion = ("  - {property: robustness, norm: inf, radius: %g, min_fraction: 0.9, basis: certified}"
                            % (max_radius / 5))
    if kind == "binary":
        return (prop("robustness", "the decision (output >= 0.5 or not) must not change", "{binary_threshold: 0.5}",
                     scale), [robustness_criterion])
    if kind != "regression":
        return (prop("robustness", "the decision must not change", None, scale)
                + prop("uncertainty", "the output must not become near-uniform (KL to uniform <= epsilon)",
                       "{epsilon: 0.1}", scale), [robustness_criterion])
    n = info["n_inputs"]
    pts = X if X is not None else lo + np.random.default_rng(0).random((64, n)) * (hi - lo)
    out = info["forward"](pts)[:, 0]
    width = max(float(out.max() - out.min()), 1e-6)
    low, high = float(out.min() - 0.25 * width), float(out.max() + 0.25 * width)
    return (prop("reachability", "the output must stay in [lower, upper]: EDIT to the safe range",
                 f"{{output: 0, lower: {low:.6g}, upper: {high:.6g}}}  # observed range widened by 25%", "domain"),
            ["  - {property: reachability, radius: %g, min_fraction: 1.0, basis: certified}" % (max_radius / 5)])


def build_config_text(args, workdir: Path | None = None) -> tuple[str, str]:
    """(YAML text with comments, model name); its paths for a workflow run in `workdir`
    (default: the current directory, paths as typed)."""
    info = _inspect_model(args)
    name = config_name(args)
    n = info["n_inputs"]
    kind, kind_note = _output_kind(info, args.model)
    data = _inspect_inputs(args.inputs, args.max_inputs) if args.inputs else None
    X = None if data is None else data["X"]
    if X is not None and X.shape[1] != n:
        raise ConfigError(f"--inputs {args.inputs}: {X.shape[1]} features per input, the model takes {n}")
    lo, hi, domain_note = _domain(args, data, n)
    unit_box = bool(np.all(lo == 0) and np.all(hi == 1))
    scalar = bool(np.all(lo == lo[0]) and np.all(hi == hi[0]))
    domain_yaml = (f"{{lower: {float(lo[0]):.6g}, upper: {float(hi[0]):.6g}}}" if scalar
                   else f"{{lower: {_fmt_list(lo)}, upper: {_fmt_list(hi)}}}")
    properties, criteria = _property_lines(args, info, kind, X, lo, hi, "input" if unit_box else "domain")
    lines = [*_model_lines(args, info, name, kind, kind_note, domain_yaml, domain_note, workdir),
             *_input_set_lines(args, data, lo, hi, domain_yaml, unit_box, workdir),
             "", "properties:", *properties,
             "", "criteria:  # pass/fail: the fraction of inputs whose radius reaches `radius`", *criteria,
             "", "sharding:", "  shard_size: 250  # inputs per radius job", "",
             "report:", f"  title: Safety risk audit of {name}", "", "device: auto  # auto | cpu | cuda", ""]
    return "\n".join(lines), name


def run(args: argparse.Namespace) -> int:
    from saferisk.config import load_plan

    # default: the audit's own folder audits/<name>/ (config/config.yaml, and its results/ once run),
    # so running it never touches the default audit's results/; --out FILE: a config for
    # `snakemake --configfile FILE` in the current directory (results/ as the default audit's)
    workdir = Path(layout.scratch_audit(config_name(args))) if args.out is None else None
    out = workdir / DEFAULT_CONFIG if workdir is not None else Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    text, name = build_config_text(args, workdir)
    atomic_write_bytes(out, text.encode())
    plan = load_plan(out, base=workdir or Path("."))
    print(f"wrote {out}: {plan.summary()}")
    where = f"--directory {workdir}" if workdir is not None else f"--configfile {out}"
    print(f"next: {workflow_command(where, args.factory)}")
    return 0


def snakemake_command() -> str:
    """How to call snakemake from here, as typed: `snakemake` when it is on PATH, else the one
    installed beside this Python (e.g. `.venv/bin/snakemake` in a virtual environment)."""
    import shutil
    import sys

    if shutil.which("snakemake"):
        return "snakemake"
    beside = Path(sys.executable).parent / "snakemake"
    if not beside.exists():
        return "snakemake"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def find_snakefile() -> Path:
    """The workflow: ./Snakefile of a saferisk checkout, else the one beside the package (an
    editable install's checkout)."""
    import saferisk

    for candidate in (Path("Snakefile"), Path(saferisk.__file__).resolve().parents[1] / "Snakefile"):
        if candidate.is_file() and (candidate.parent / "workflow" / "rules" / "common.smk").is_file():
            return candidate
    raise ConfigError("no saferisk workflow: neither the current directory nor the installed package's checkout "
                      "has the saferisk Snakefile; run this in the saferisk checkout")


def workflow_command(options: str, factory: str | None = None) -> str:
    """`snakemake OPTIONS` as typed here, with --snakefile when the workflow is not ./Snakefile
    and, for a --factory run in an audit folder (--directory), this directory on PYTHONPATH: the
    factory's module is found here, not in the folder the jobs run in."""
    try:
        snakefile = find_snakefile()
    except ConfigError:
        snakefile = Path("Snakefile")
    extra = "" if snakefile.resolve() == Path("Snakefile").resolve() else f" --snakefile {snakefile}"
    prefix = f"PYTHONPATH={shlex.quote(os.getcwd())} " if factory and "--directory" in options else ""
    return f"{prefix}{snakemake_command()}{extra} {options}"
