"""`saferisk verify` on every known-sat instance of ../shared/vnncomp (ACAS Xu 2_1 property 2,
mnist-net_256x2 properties 0, 1, 3 at eps 0.05), with the model read into saferisk's graph
(gradients, bounds) and loaded as onnxruntime-only (finite-difference gradients, no bounds):
seconds per instance against the 60 s goal (issue 25).

    python -m benchmarks --only verify      or      python benchmarks/bench_verify.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_bounds import ACAS_KNOWN, MNIST_KNOWN  # noqa: E402
from benchmarks.common import BenchReport, Goal, Table, shared_path  # noqa: E402
from saferisk.data.vnnlib import load_vnnlib  # noqa: E402
from saferisk.models.load import load_model  # noqa: E402
from saferisk.models.model import Model  # noqa: E402
from saferisk.models.ort import OnnxRuntimeForward  # noqa: E402
from saferisk.verify import verify_spec  # noqa: E402

TIMEOUT_S = 60.0  # the goal per instance


def known_sat_instances() -> list[tuple[Path, Path]]:
    """(model, spec) of every instance with a known counterexample (the competition's verdicts)."""
    acas = [(shared_path("vnncomp", "acasxu", f"ACASXU_run2a_{net}_batch_2000.onnx"),
             shared_path("vnncomp", "acasxu", f"prop_{prop}.vnnlib"))
            for (net, prop), known in sorted(ACAS_KNOWN.items()) if known == "counterexample"]
    mnist = [(shared_path("vnncomp", "mnistfc", "mnist-net_256x2.onnx"),
              shared_path("vnncomp", "mnistfc", f"prop_{prop}_{eps}.vnnlib"))
             for prop, outcomes in sorted(MNIST_KNOWN.items())
             for eps, known in zip(("0.03", "0.05"), outcomes) if known == "counterexample"]
    return acas + mnist


def _modes(model_path: Path) -> dict[str, Model]:
    """The model with saferisk's graph, and as onnxruntime-only (as bench_witness builds it)."""
    return {"graph": load_model(model_path),
            "onnxruntime only": Model(None, name=model_path.stem, runtime=OnnxRuntimeForward(model_path.read_bytes()),
                                      graph_error="black-box run")}


def run(quick: bool = False) -> BenchReport:
    report = BenchReport("verify", "`saferisk verify` on the known counterexamples, graph and onnxruntime-only",
                         quick=quick)
    table = Table(f"Known-sat VNN-COMP 2021 instances, timeout {TIMEOUT_S:.0f} s",
                  ["model", "spec", "mode", "result", "seconds", "evaluations", "re-checked by"])
    found = total = 0
    slowest = 0.0
    for model_path, spec_path in known_sat_instances():
        spec = load_vnnlib(spec_path)
        for mode, model in _modes(model_path).items():
            result = verify_spec(model, spec, timeout_s=TIMEOUT_S, seed=0)
            cex = result.counterexample
            table.add(model_path.stem, spec_path.stem, mode, result.result, result.seconds, result.evaluations,
                      "-" if cex is None else cex.rechecked_by)
            total += 1
            found += int(result.result == "sat" and "onnxruntime" in cex.rechecked_by)
            slowest = max(slowest, result.seconds)
    table.notes.append("sat = a counterexample re-checked by a fresh forward pass (onnxruntime in both modes); "
                       "onnxruntime only: finite-difference gradients for the attack, no certified bounds")
    report.tables.append(table)
    report.goals.append(Goal(f"every known-sat instance sat (re-checked by onnxruntime) within {TIMEOUT_S:.0f} s, "
                             "both modes", f"{found}/{total}, slowest {slowest:.1f} s",
                             found == total and slowest < TIMEOUT_S))
    return report


def main() -> None:
    print(run(quick="--quick" in sys.argv).markdown())


if __name__ == "__main__":
    main()
