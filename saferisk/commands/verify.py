"""`saferisk verify --model M.onnx --spec P.vnnlib`: VNN-COMP's sat / unsat / unknown.

Exit code 0 for each of the three answers; errors (missing file, malformed spec, model/spec
size mismatch) exit 2 with one line. The logic lives in `saferisk.verify`.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from saferisk.commands.common import add_model_args, load_model_arg
from saferisk.data.vnnlib import load_vnnlib
from saferisk.io import atomic_write_bytes, dumps_json
from saferisk.verify import verify_spec, vnncomp_result_text


def run(args: argparse.Namespace) -> int:
    from saferisk.errors import ConfigError

    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise ConfigError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    spec = load_vnnlib(args.spec)
    model = load_model_arg(args)
    torch.manual_seed(args.seed)
    result = verify_spec(model, spec, timeout_s=args.timeout, seed=args.seed)
    if args.output:
        atomic_write_bytes(args.output, vnncomp_result_text(result).encode())
    if args.json:
        payload = result.to_dict()
        payload.update({"model": str(args.model), "spec": str(args.spec), "seed": args.seed,
                        "timeout": args.timeout})
        sys.stdout.write(dumps_json(payload))
    else:
        print(result.result)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="VNN-COMP style check of one VNN-LIB property: sat / unsat / unknown",
        description="Check one VNN-LIB property (VNN-COMP format) on a model. 'sat': a re-checked "
        "counterexample was found; 'unsat': certified bounds prove the property on the whole input "
        "box; 'unknown': neither within the time limit. Exit code 0 for all three.")
    add_model_args(parser)
    parser.add_argument("--spec", required=True, help="VNN-LIB property file (.vnnlib)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print result, counterexample (input and output) and seconds as JSON")
    parser.add_argument("--output", default=None,
                        help="also write a VNN-COMP result file (answer and counterexample assignment)")
    parser.set_defaults(func=run)
