"""Benchmark: aggregate-summary + render the summary PDF of 4 models x 4 properties x 1000
inputs (fabricated results, tests/synthetic.py). Goal: < 10 s. Run from the repository root:

    .venv/bin/python -m benchmarks.bench_report [--inputs 1000] [--out /tmp/bench-summary.pdf] [--quick]
    .venv/bin/python -m benchmarks --only report
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PROPERTIES = [("robustness", "inf"), ("robustness", "2"), ("uncertainty", "inf"), ("invariance", "inf")]
CRITERIA = [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.9, "basis": "certified"},
            {"property": "robustness-2", "radius": 0.05, "min_fraction": 0.9, "basis": "certified"},
            {"property": "uncertainty-inf", "radius": 0.02, "min_fraction": 0.9, "basis": "estimate"},
            {"property": "invariance-inf", "radius": 0.02, "min_fraction": 0.5, "basis": "certified"}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="200 inputs per model and property")
    args = parser.parse_args(argv)
    if args.quick:
        args.inputs = min(args.inputs, 200)

    from saferisk.audit import summarize, table_from_results
    from saferisk.report import render_summary_report
    from tests.synthetic import fabricate_results

    results = []
    for index in range(args.models):
        results += fabricate_results(f"model-{index}", PROPERTIES, args.inputs, input_shape=(1, 8, 8), seed=index,
                                     model_sha256=f"{index:02d}" * 32, strength=0.6 + 0.3 * index)
    manifests = {f"model-{i}": {"name": f"model-{i}", "artifact_sha256": f"{i:02d}" * 32} for i in range(args.models)}
    table = table_from_results(results)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "summary.pdf"
        start = time.perf_counter()
        summary = summarize(table, CRITERIA, models=sorted(manifests))
        summarized = time.perf_counter()
        render_summary_report(table, summary, manifests, {"audit_date": "2026-11-20"}, out)
        done = time.perf_counter()
        size_kb = out.stat().st_size / 1e3
    print(f"{args.models} models x {len(PROPERTIES)} properties x {args.inputs} inputs = {len(table)} rows: "
          f"summarize {summarized - start:.2f} s, render {done - summarized:.2f} s, total {done - start:.2f} s "
          f"(goal < 10 s for 4 x 4 x 1000); PDF {size_kb:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
