"""`saferisk radius`: the radius bracket of inputs for one property and norm."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from saferisk.commands.common import (add_domain_args, add_model_args, domain_from_args, load_labels,
                                      load_model_arg, parse_floats, parse_ints, print_json)
from saferisk.data.selection import select
from saferisk.data.spec import load_path
from saferisk.errors import ConfigError, DataError
from saferisk.search import SEARCH_MODES, SearchConfig


def register(sub) -> None:
    p = sub.add_parser("radius", help="maximum safe radius bracket of inputs (lower <= r* <= upper, with the estimate)",
                       description="For each input x0: the certified lower bound, the paper's Lipschitz-metric "
                       "estimate (NOT a guarantee) and a witness upper bound (a re-checked violating input) of the "
                       "maximum safe radius of B_p(x0, r) ∩ domain.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    p.add_argument("--inputs", required=True, metavar="FILE", help="inputs, one per row (.npy, .npz with X [and y], .csv with a header, a PNG folder), flat or in the model's shape")
    p.add_argument("--indices", metavar="I,J,..", help="only these rows (0-based)")
    p.add_argument("--labels", metavar="FILE", help="labels (.npy/.npz/.csv), needed by invariance")
    from saferisk.properties import PROPERTY_KINDS

    p.add_argument("--property", required=True, help=f"the property kind, as in the config: {' | '.join(sorted(PROPERTY_KINDS))}")
    p.add_argument("--decision", default="argmax", choices=["argmax", "argmin"], help="robustness: decision rule (argmin for ACAS Xu)")
    p.add_argument("--target-classes", metavar="I,J", help="robustness: only a decision in these classes counts")
    p.add_argument("--output", default="0", metavar="INDEX|W1,W2,..", help="reachability: output index or weights over the outputs")
    p.add_argument("--lower", metavar="L", help="reachability: lower bound of the output (use --lower=-1 for negatives)")
    p.add_argument("--upper", metavar="U", help="reachability: upper bound of the output")
    p.add_argument("--epsilon", type=float, default=0.01, help="uncertainty: KL(uniform||softmax) must stay above this")
    p.add_argument("--k", type=int, default=3, help="invariance: number of nearest differently-labelled references")
    p.add_argument("--function", metavar="MODULE:FUNCTION", help="custom: w(outputs) -> (B,) values, importable")
    p.add_argument("--threshold", type=float, default=0.0, help="custom: the property holds while w > threshold")
    p.add_argument("--params", metavar="JSON|FILE",
                   help="the property's params as in the config's `params` block (inline JSON or a YAML/JSON file), "
                        "e.g. linear_output's {\"unsafe\": [{\"C\": [[1, -1]], \"d\": [0]}]}; overrides the flags")
    p.add_argument("--norm", required=True, choices=["inf", "2", "1"], help="norm of the ball")
    p.add_argument("--max-radius", required=True, type=float, help="d: the largest radius examined")
    add_domain_args(p)
    p.add_argument("--scale", default="input", choices=["input", "domain"],
                   help="radii in the model's input units, or in fractions of each feature's domain width")
    p.add_argument("--search", default="fast", choices=list(SEARCH_MODES), help="gps: the paper's full poll; fast: random-subspace polls + gradient-guided starts")
    p.add_argument("--budget", type=int, default=SearchConfig.budget, help="max forward evaluations per input")
    p.add_argument("--no-certify", action="store_true", help="skip certified lower bounds")
    p.add_argument("--certify-method", default=None, help="ibp | crown | alpha-crown | bab (default: strongest)")
    p.add_argument("--certify-timeout", type=float, default=None, help="seconds of certified-bound work per input")
    p.add_argument("--witness-dir", metavar="DIR", help="save x0 and each witness to DIR/witnesses.npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON list of result records")
    p.set_defaults(func=run)


def property_params(args) -> dict:
    """The property's params (the config's `params` block) from the flags."""
    kind = args.property
    if kind == "robustness":
        params = {"decision": args.decision}
        if args.target_classes:
            params["target_classes"] = parse_ints(args.target_classes, "--target-classes")
        return params
    if kind == "reachability":
        values = parse_floats(args.output, "--output")
        output = int(values[0]) if len(values) == 1 and "." not in args.output else values
        return {"output": output,
                "lower": None if args.lower is None else parse_floats(args.lower, "--lower")[0],
                "upper": None if args.upper is None else parse_floats(args.upper, "--upper")[0]}
    if kind == "uncertainty":
        return {"epsilon": args.epsilon}
    if kind == "invariance":
        return {"k": args.k}
    if kind == "custom":
        return {"function": args.function or "", "threshold": args.threshold}
    return {}


def params_arg(text: str | None) -> dict:
    """--params: inline JSON, or a YAML / JSON file holding a mapping."""
    if not text:
        return {}
    import yaml

    source = Path(text)
    try:
        value = yaml.safe_load(source.read_text() if source.is_file() else text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--params is neither a readable YAML/JSON file nor inline JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--params must be a mapping of the property's params, got {type(value).__name__}")
    return value


def property_spec(args) -> dict:
    """The flags as a config property entry (the shape saferisk.steps.radius takes)."""
    certify: dict = {"enabled": not args.no_certify}
    if args.certify_method:
        certify["method"] = args.certify_method
    if args.certify_timeout:
        certify["time_budget_s"] = args.certify_timeout
    return {"kind": args.property, "params": {**property_params(args), **params_arg(args.params)}, "max_radius": args.max_radius,
            "scale": args.scale, "search": {"mode": args.search, "budget": args.budget}, "certify": certify}


def run(args) -> int:
    from saferisk.steps.radius import radius_brackets

    if not args.max_radius > 0:
        raise ConfigError(f"--max-radius must be > 0, got {args.max_radius}")
    spec = property_spec(args)
    model = load_model_arg(args)
    # the workflow's reader, checks and step: the rows must have the model's input size (never
    # reshaped to fit), finite values inside the domain; CSV headers, ids and npz labels are understood
    inputs = load_path(args.inputs)
    if args.labels:
        labels = load_labels(args.labels)
        if len(labels) != len(inputs):
            raise DataError(f"{len(inputs)} inputs in {args.inputs} but {len(labels)} labels in {args.labels}")
        inputs = dataclasses.replace(inputs, labels=labels)
    chosen = select(inputs, indices=parse_ints(args.indices, "--indices")) if args.indices else inputs
    witness_path = Path(args.witness_dir) / "witnesses.npz" if args.witness_dir else None
    results = radius_brackets(model, chosen, spec, args.norm, domain=domain_from_args(args, model.n_inputs),
                              seed=args.seed, references=inputs, witness_path=witness_path,
                              witness_ref=str(witness_path) if witness_path else None, key="--property")
    records = [r.to_dict() for r in results]
    if args.json:
        print_json(records)
    else:
        fmt = lambda v: "-" if v is None else f"{v:.4g}"
        print(f"{'input':>6} {'lower':>9} {'estimate':>9} {'upper':>9}  status")
        for r in results:
            print(f"{r.input_id:>6} {fmt(r.radius_lower):>9} {fmt(r.radius_estimate):>9} {fmt(r.radius_upper):>9}  {r.status}")
    return 0
