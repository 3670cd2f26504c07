"""`python -m benchmarks [--quick] [--only NAME ...] [--list]`: run the benchmarks, print markdown
tables and write them to benchmarks/results/<name>.md (+ .json, + README_performance.md)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import pkgutil
import sys
import time
import traceback
from contextlib import redirect_stdout
from pathlib import Path

import torch

from benchmarks.common import RESULTS_DIR, BenchReport, Skip, machine_info, machine_markdown, write_report

#: run first, in this order; any other benchmarks/bench_<name>.py module runs after them
CORE = ("paper", "throughput", "compare", "gpu")


def discover() -> list[str]:
    here = Path(__file__).resolve().parent
    found = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    return [n for n in CORE if n in found] + [n for n in found if n not in CORE]


def run_one(name: str, quick: bool) -> BenchReport:
    """Run benchmarks.bench_<name>: `run(quick=...)` returning a BenchReport or markdown text;
    a module with only `main(argv)` is run with `--quick` when asked and its stdout kept."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    start = time.perf_counter()
    if hasattr(module, "run"):
        out = module.run(quick=quick)
    elif hasattr(module, "main"):
        buf = io.StringIO()
        takes_argv = bool(inspect.signature(module.main).parameters)
        saved_argv = sys.argv
        sys.argv = [f"bench_{name}.py"]  # a main() that parses sys.argv gets its defaults
        try:
            with redirect_stdout(buf):
                code = module.main(["--quick"] if quick else []) if takes_argv else module.main()
        except SystemExit as exc:  # argparse errors in a script-style main
            code = exc.code
        finally:
            sys.argv = saved_argv
        if code not in (None, 0):
            raise RuntimeError(f"bench_{name}.main exited with {code}: {buf.getvalue()[-2000:]}")
        out = buf.getvalue()
    else:
        raise Skip(f"benchmarks/bench_{name}.py defines neither run(quick) nor main(argv)")
    if isinstance(out, str):
        out = _text_report(name, out, quick)
    out.seconds = time.perf_counter() - start
    out.quick = quick
    return out


def _text_report(name: str, text: str, quick: bool) -> BenchReport:
    report = BenchReport(name, f"{name} benchmark", quick=quick)
    if text.strip():
        report.notes.append("output:\n\n```\n" + text.strip() + "\n```")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs and iterations (< 3 minutes on CPU)")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), metavar="DIR",
                        help="where the tables go (default benchmarks/results)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a shared machine)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    print(machine_markdown(machine_info()) + "\n")
    failures = 0
    total = time.perf_counter()
    for name in names:
        print(f"# {name}", flush=True)
        try:
            report = run_one(name, args.quick)
        except Skip as skip:
            print(f"skipped: {skip}\n", flush=True)
            continue
        except Exception:  # one broken benchmark must not hide the others
            failures += 1
            print(f"FAILED:\n{traceback.format_exc()}", flush=True)
            continue
        path = write_report(report, results_dir)
        print(report.markdown(), flush=True)
        print(f"(written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})\n", flush=True)
    from benchmarks.performance import write_performance

    perf = write_performance(results_dir)
    print(f"README performance section: {perf}  (total {time.perf_counter() - total:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
