"""`saferisk reach`: the reachable range [min, max] of one output over a box."""

from __future__ import annotations

from saferisk.commands.common import add_model_args, load_model_arg, parse_floats, print_json
from saferisk.errors import ConfigError
from saferisk.search import SearchConfig, reachable_range


def register(sub) -> None:
    p = sub.add_parser("reach", help="reachable range [min, max] of an output over an input box",
                       description="Multi-start batched pattern search (plus sampling and gradient-guided starts) "
                       "for the minimum and maximum of one output over the box [lower, upper]. The range found is "
                       "an inner estimate: the true range contains it.")
    add_model_args(p)
    p.add_argument("--lower", required=True, metavar="L1,L2,..", help="box lower corner (use --lower=-1,0 for negatives)")
    p.add_argument("--upper", required=True, metavar="U1,U2,..", help="box upper corner")
    p.add_argument("--output", default="0", metavar="INDEX|W1,W2,..", help="output index or weights over the outputs")
    p.add_argument("--budget", type=int, default=SearchConfig.budget, help="max forward evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print min, max, argmin, argmax, evaluations, seconds as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    lower = parse_floats(args.lower, "--lower")
    upper = parse_floats(args.upper, "--upper")
    if len(lower) != len(upper):
        raise ConfigError(f"--lower has {len(lower)} values, --upper has {len(upper)}")
    values = parse_floats(args.output, "--output")
    output = int(values[0]) if len(values) == 1 and "." not in args.output else values
    model = load_model_arg(args)
    if len(lower) != model.n_inputs:
        raise ConfigError(f"the box has {len(lower)} dimensions, the model expects {model.n_inputs} inputs")
    config = SearchConfig(mode="gps", mesh_tolerance=1e-6, n_starts=8, n_random=1024, budget=args.budget)
    result = reachable_range(model, output, lower, upper, config=config, seed=args.seed)
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"min {result.min:.6g} at {result.argmin}\nmax {result.max:.6g} at {result.argmax}\n"
              f"{result.evaluations} evaluations in {result.seconds:.3f} s")
    return 0
