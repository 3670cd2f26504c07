"""`saferisk validate-config [FILE]`: check an audit config before running it.

Runs the packaged JSON schema (the same file the Snakefile validates with) and the parse-time
checks (names, model/input-set shapes, labels, criteria), then loads every model; prints
`config OK: N models, M input sets, K properties -> J radius jobs` and, per model, which
evaluator runs it and whether certified bounds cover it, or one line naming the key and what
is wrong (exit 2). With `--profile DIR` (e.g. your copy of profiles/slurm) it also warns about
every profile value still `CHANGE_ME_...`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saferisk.config import load_plan
from saferisk.config.plan import DEFAULT_CONFIG


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate-config", help="check an audit config (schema + cross-key checks)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                        help=f"config file (default: {DEFAULT_CONFIG})")
    parser.add_argument("--workdir", default=".",
                        help="directory the config's relative paths start from (snakemake's working "
                             "directory; default: the current directory)")
    parser.add_argument("--jobs", action="store_true", help="also list every radius job")
    parser.add_argument("--profile", metavar="DIR",
                        help="also check a Snakemake profile (e.g. profiles/slurm): warn about values "
                             "still CHANGE_ME_... (your site's account, partitions)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saferisk.bounds.support import model_support
    from saferisk.config.profile import profile_warnings
    from saferisk.errors import ConfigError, ModelError

    plan = load_plan(Path(args.config), base=Path(args.workdir))
    profile = profile_warnings(args.profile) if args.profile else []
    lines = []
    for name, model in plan.models.items():  # load each model now: no job is the first to fail on it
        spec = model.spec
        try:
            support = model_support(model.source, format=model.format, factory=spec.get("factory"),
                                    factory_kwargs=spec.get("factory_kwargs"), input_shape=spec.get("input_shape"))
        except ModelError as exc:
            raise ConfigError(f"models.{name}: the model cannot be loaded: {exc}") from None
        lines.append(f"  model {name}: {support.describe()}")
    print(f"config OK: {plan.summary()}")
    print("\n".join(lines))
    for warning in [*plan.warnings, *profile]:
        print(f"warning: {warning}")
    if args.jobs:
        for job in plan.radius_jobs():
            print(f"  {job.output}")
    return 0
