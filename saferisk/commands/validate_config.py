"""`saferisk validate-config [FILE]`: check an audit config before running it.

Runs the packaged JSON schema (the same file the Snakefile validates with) and the parse-time
checks (names, model/input-set shapes, labels, criteria); prints
`config OK: N models, M input sets, K properties -> J radius jobs` or one line naming the
key and what is allowed (exit 2).
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    plan = load_plan(Path(args.config), base=Path(args.workdir))
    print(f"config OK: {plan.summary()}")
    if args.jobs:
        for job in plan.radius_jobs():
            print(f"  {job.output}")
    return 0
