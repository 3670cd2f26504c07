"""`saferisk` command line: one subcommand per module in saferisk/commands/.

Each command module defines `register(subparsers)` (adds its parser and sets `func`).
User errors (SaferiskError) print one line `saferisk: error: ...` and exit 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from saferisk import __version__
from saferisk.errors import SaferiskError

COMMANDS = ("audit", "radius", "reach", "verify", "export", "init", "validate_config", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saferisk",
        description="Audit trained neural networks for safety risks: maximum safe radius brackets "
        "(certified lower bound <= true radius <= witness upper bound, with the Lipschitz-metric "
        "estimate of Xu, Ruan & Huang beside them).",
    )
    parser.add_argument("--version", action="version", version=f"saferisk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"saferisk.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"saferisk.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SaferiskError as exc:
        print(f"saferisk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saferisk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
