"""Cost versus input size: seconds per input and peak memory for the estimate, the witness and the
certified lower bound on ResNet-18-style nets (width 16, random weights) from 8x8 to 3x224x224,
and on the tiny ViT and the LSTM of tests/real_networks.py (read per sample: saferisk's graph, gradients).

    python -m benchmarks --only scaling [--quick]

Each case runs in its own process (peak memory = that process's max RSS): one input, robustness
in L-inf with max radius 8/255, the default search (fast mode: random-subspace polls of 64
coordinates, gradient-guided starts where gradients exist, budget 30000 evaluations; 2000 from
50,000 input features on, where one evaluation costs a full forward pass of a large image), then CROWN
with the default certify.memory_mb (auto: the network's need, at most 8192 MiB) and a 50 s cap (the
pass in flight when it passes still ends; the seconds shown include it); then both runtimes are
timed on one 256-row batch (rows per second: what `search.poll_evaluator: fastest` compares). Goals (issue): 3x224x224 estimate + witness
under 5 minutes per input; a CIFAR ResNet-18 (width 16) certified lower bound > 0 within 8 GB and
60 s.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import BenchReport, Goal, Table  # noqa: E402

NAME = "scaling"
ROOT = Path(__file__).resolve().parents[1]
CASES = {  # name -> (architecture, per-sample input shape)
    "resnet18-1x8x8": ("resnet", (1, 8, 8)),
    "resnet18-1x28x28": ("resnet", (1, 28, 28)),
    "resnet18-3x32x32": ("resnet", (3, 32, 32)),
    "resnet18-3x64x64": ("resnet", (3, 64, 64)),
    "resnet18-3x224x224": ("resnet", (3, 224, 224)),
    "vit-1x8x8": ("vit", (1, 8, 8)),
    "lstm-5x4": ("lstm", (5, 4)),
}
QUICK = ("resnet18-1x8x8", "resnet18-3x32x32", "lstm-5x4")
MAX_RADIUS = 8 / 255
LARGE_INPUT = 50_000  # features from which the search budget is LARGE_BUDGET instead of the default
LARGE_BUDGET = 2_000
CERTIFY_SECONDS = 50.0  # the cap; the pass in flight when it passes still ends (goal: 60 s in all)
CERTIFY_GOAL_S = 60.0
ESTIMATE_GOAL_S = 300.0
MEMORY_GOAL_MB = 8192


def _model(arch: str, shape: tuple[int, ...]):
    from saferisk.models.load import module_to_onnx, read_forward
    from saferisk.models.model import Model
    from tests.real_networks import _randomised, build, cifar_resnet18

    if arch == "resnet":
        module = _randomised(cifar_resnet18(16, channels=shape[0]), 0, weight_scale=1.0)
    else:
        module = build(arch)[0]
    onnx_bytes = module_to_onnx(module, shape)
    forward = read_forward(onnx_bytes)
    return Model(forward.graph, name=arch, runtime=forward.runtime, graph_error=forward.graph_error,
                 onnx_bytes=onnx_bytes)


def measure(case: str) -> dict:
    """One case in this process: seconds for estimate + witness and for the lower bound."""
    from saferisk.bounds import CertifyConfig
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius, certify as certify_bound

    arch, shape = CASES[case]
    model = _model(arch, shape)
    n = model.n_inputs
    x0 = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    domain = Domain.scalar(0.0, 1.0, n)
    from saferisk.search import SearchConfig

    search = SearchConfig(budget=LARGE_BUDGET) if n >= LARGE_INPUT else SearchConfig()
    start = time.perf_counter()
    result = compute_radius(model, x0.numpy(), Robustness(), "inf", MAX_RADIUS, domain, search=search,
                            certify=False, seed=0)
    search_s = time.perf_counter() - start
    bound = Robustness().bind(model.forward_flat(x0[None].to(model.dtype))[0].double())
    cap = result.radius_upper if result.radius_upper is not None else MAX_RADIUS
    lower, method, cert = certify_bound(
        model, bound, x0.to(model.dtype), "inf", cap, domain, None,
        CertifyConfig(method="crown", time_budget_s=CERTIFY_SECONDS), result.radius_upper)  # memory_mb: auto
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the timing batches
    # seconds per row of a 256-row batch in each runtime (what search.poll_evaluator: fastest compares)
    timings = model.poll_timings() if model.graph is not None else {}
    return {"case": case, "n_inputs": n, "evaluator": model.evaluator, "search_s": search_s,
            "evaluations_budget": search.budget,
            "evaluations": result.evaluations, "estimate": result.radius_estimate, "upper": result.radius_upper,
            "lower": lower, "lower_method": method, "certify_s": cert.seconds,
            "certify_exhausted": cert.budget_exhausted, "certify_clock_capped": cert.clock_capped,
            "certify_memory_mb": cert.memory_mb,
            "rows_per_s": {name: 1.0 / seconds for name, seconds in timings.items()},
            "peak_mb": peak_mb}


def _run_case(case: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_scaling", "--case", case], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"case": case, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _plot(rows: list[dict]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resnet = [r for r in rows if r["case"].startswith("resnet") and "error" not in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    n = [r["n_inputs"] for r in resnet]
    a.loglog(n, [r["search_s"] for r in resnet], "o-", label="estimate + witness")
    a.loglog(n, [r["certify_s"] for r in resnet], "s-", label="lower bound (CROWN)")
    a.set_xlabel("input features"), a.set_ylabel("seconds per input"), a.legend(fontsize=8)
    b.semilogx(n, [r["peak_mb"] for r in resnet], "o-")
    b.set_xlabel("input features"), b.set_ylabel("peak memory (MB)")
    fig.suptitle("ResNet-18-style (width 16): cost versus input size", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def run(quick: bool = False) -> BenchReport:
    cases = QUICK if quick else tuple(CASES)
    rows = [_run_case(case) for case in cases]
    report = BenchReport(NAME, "Cost versus input size (ResNet-18-style, ViT, LSTM)", quick=quick)
    table = Table(f"one input, robustness L-inf, max radius {MAX_RADIUS:.4g}, default search, CROWN "
                  f"(cap {CERTIFY_SECONDS:g} s, memory_mb auto: the default)",
                  ["model", "features", "evaluator", "estimate + witness (s)", "evaluations", "estimate", "witness",
                   "certified lower", "by", "lower bound (s)", "memory_mb", "peak memory (MB)",
                   "rows/s saferisk graph", "rows/s onnxruntime"])
    for r in rows:
        if "error" in r:
            table.add(r["case"], "—", "—", f"error: {r['error']}", *[""] * 10)
            continue
        rates = r.get("rows_per_s", {})
        lower = _fmt(r["lower"]) + ("" if r["lower"] is not None else f" ({(r['lower_method'] or '')[:60]})")
        stop = " (cap)" if r.get("certify_clock_capped") else " (work)" if r["certify_exhausted"] else ""
        table.add(r["case"], str(r["n_inputs"]), r["evaluator"], f"{r['search_s']:.1f}", str(r["evaluations"]),
                  _fmt(r["estimate"]), _fmt(r["upper"]), lower, r["lower_method"] if r["lower"] else "—",
                  f"{r['certify_s']:.1f}" + stop, str(r.get("certify_memory_mb") or "—"), f"{r['peak_mb']:.0f}",
                  _fmt(rates.get("torch"), 3), _fmt(rates.get("onnxruntime"), 3))
    report.tables.append(table)
    by_case = {r["case"]: r for r in rows if "error" not in r}
    big = by_case.get("resnet18-3x224x224")
    if big is not None:
        report.goals.append(Goal(f"3x224x224 estimate + witness per input < {ESTIMATE_GOAL_S:g} s "
                                 f"(search budget {big['evaluations_budget']} evaluations)",
                                 f"{big['search_s']:.0f} s", big["search_s"] < ESTIMATE_GOAL_S))
    cifar = by_case.get("resnet18-3x32x32")
    if cifar is not None:
        ok = (cifar["lower"] is not None and cifar["lower"] > 0 and cifar["peak_mb"] < MEMORY_GOAL_MB
              and cifar["certify_s"] < CERTIFY_GOAL_S)
        report.goals.append(Goal(f"CIFAR ResNet-18 (width 16) certified lower bound > 0 within 8 GB and {CERTIFY_GOAL_S:g} s",
                                 f"{_fmt(cifar['lower'])} by {cifar['lower_method']}, {cifar['certify_s']:.1f} s, "
                                 f"{cifar['peak_mb']:.0f} MB peak", ok))
    report.files["scaling.png"] = _plot(rows)
    report.notes.append("random weights (seeded): certified bounds on random deep nets are far looser than on "
                        "trained ones; the memory column is what matters for OOM")
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case)))
        return 0
    print(run(quick=args.quick).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
