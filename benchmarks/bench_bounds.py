"""Certified lower bounds (saferisk.bounds): radius brackets on mnist-net_256x2 and the demo
digits models, certified count at eps 0.03, ACAS Xu `saferisk verify` beside the competition verdicts.

    python -m benchmarks --only bounds [--quick]      or      python benchmarks/bench_bounds.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO_ROOT, BenchReport, Goal, Skip, Table, shared_path  # noqa: E402
from saferisk.bounds import CertifyConfig, certify_radius, verify_box  # noqa: E402
from saferisk.data.domain import Domain  # noqa: E402
from saferisk.data.vnnlib import load_vnnlib  # noqa: E402
from saferisk.models.load import load_model  # noqa: E402
from saferisk.properties import Robustness, vnnlib_property  # noqa: E402
from saferisk.verify import verify_spec  # noqa: E402

MNIST_KNOWN = {0: ("verified", "counterexample"), 1: ("verified", "counterexample"), 2: ("verified", "verified"),
               3: ("verified", "counterexample"), 4: ("verified", "verified")}
ACAS_KNOWN = {("1_1", 1): "verified", ("1_1", 2): "verified", ("1_1", 3): "verified", ("1_1", 4): "verified",
              ("2_1", 1): "verified", ("2_1", 2): "counterexample", ("2_1", 3): "verified", ("2_1", 4): "verified"}


def _witness_radius(model, bound, x0, max_radius, domain) -> float:
    """radius_upper: distance of a re-checked violating input (max_radius if none found)."""
    try:
        from saferisk.search import find_witness
    except ImportError:
        return float("nan")
    witness = find_witness(model, bound, x0, max_radius, "inf", domain)
    return float(witness.distance) if witness is not None else float(max_radius)


def _bracket_rows(table: Table, name: str, model, inputs: list[tuple[torch.Tensor, int | None]], max_radius: float,
                  domain: Domain, config: CertifyConfig, exact: bool = False,
                  cache: dict | None = None) -> tuple[float, list]:
    """One row: certify_radius as the radius engine calls it (capped by the witness radius).
    `cache` keeps each input's witness radius and exact radius across rows of the same model
    (they do not depend on the certify config; the MILP is the slow part)."""
    lowers, uppers, exacts, seconds, methods = [], [], [], [], []
    cache = {} if cache is None else cache
    for k, (x0, label) in enumerate(inputs):
        z0 = model.forward_flat(x0[None])[0]
        bound = Robustness().bind(z0, label)
        if ("upper", k) not in cache:
            cache[("upper", k)] = _witness_radius(model, bound, x0, max_radius, domain)
        upper = cache[("upper", k)]
        cert = certify_radius(model.graph, bound.spec(), x0, "inf", max_radius, domain, config=config,
                              upper_hint=upper)
        lowers.append(cert.radius_lower if cert.radius_lower is not None else float("nan"))
        uppers.append(upper)
        seconds.append(cert.seconds)
        methods.append(cert.method)
        if exact:
            if ("exact", k) not in cache:
                cache[("exact", k)] = _exact_radius(model, x0, bound.decision, upper)
            exacts.append(cache[("exact", k)])
    counts = {m: methods.count(m) for m in sorted(set(methods), key=str)}
    ratio_exact = (f"{np.nanmean(np.array(lowers) / np.array(exacts)):.3f} (exact / witness "
                   f"{np.nanmean(np.array(exacts) / np.array(uppers)):.3f})") if exact else "n/a"
    table.add(name, len(inputs), float(np.nanmean(lowers)), float(np.nanmean(uppers)),
              float(np.nanmean(np.array(lowers) / np.array(uppers))), ratio_exact, float(np.mean(seconds)),
              float(np.max(seconds)), ", ".join(f"{k}: {v}" for k, v in counts.items()),
              str(all(not (lo > up + 1e-9) for lo, up in zip(lowers, uppers))))
    return float(np.mean(seconds)), lowers


def _exact_radius(model, x0: torch.Tensor, decision: int, max_radius: float) -> float:
    """The exact L-inf radius (MILP) of a ReLU MLP; max_radius if no violation within it."""
    from benchmarks.exact import exact_linf_radius
    linear = [n for n in model.graph.nodes if n.op == "linear"]
    weights = [n.params["weight"].double().numpy() for n in linear]
    biases = [n.params["bias"].double().numpy() for n in linear]
    result = exact_linf_radius(weights, biases, x0.double().numpy(), decision, max_radius)
    return float(max_radius if result.radius is None else result.radius)


def run(quick: bool = False) -> BenchReport:
    torch.set_num_threads(1)  # small tensors: one thread avoids oversubscription
    report = BenchReport("bounds", "Certified lower bounds (IBP / CROWN / alpha-CROWN / BaB)", quick=quick)
    config = CertifyConfig()  # the default an audit gets: ~1 s per input and property
    brackets = Table("Radius brackets, L-inf robustness (CPU, 1 thread), certify_radius capped by the witness",
                     ["model", "inputs", "mean radius_lower", "mean radius_upper (witness)", "mean lower/upper",
                      "mean lower/exact", "s / input (mean)", "s / input (max)", "method of the bound", "lower <= upper everywhere"])
    mnist_dir = shared_path("vnncomp", "mnistfc")
    model = load_model(mnist_dir / "mnist-net_256x2.onnx")
    domain = Domain.scalar(0.0, 1.0, 784)
    verdicts = Table("mnist-net_256x2: the vnnlib properties", ["prop", "label", "radius_lower", "method",
                                                                 "verify_box eps 0.03", "known 0.03",
                                                                 "radius_lower <= 0.05 where known counterexample"])
    inputs, certified_003 = [], 0
    for prop in range(5):
        spec = load_vnnlib(mnist_dir / f"prop_{prop}_0.03.vnnlib")
        lower, upper = torch.tensor(spec.lower), torch.tensor(spec.upper)
        x0 = torch.where(lower > 0, lower + 0.03, upper - 0.03)
        inputs.append((x0, spec.label))
        z0 = model.forward_flat(x0[None])[0]
        bound = vnnlib_property(spec).bind(z0, spec.label)
        cert = certify_radius(model.graph, bound.spec(), x0, "inf", 0.1, domain, config=CertifyConfig(time_budget_s=5.0))
        start = time.perf_counter()
        verdict = verify_box(model.graph, bound.spec(), lower, upper, timeout_s=5.0 if not quick else 1.0)
        elapsed = time.perf_counter() - start
        certified_003 += int(cert.radius_lower >= 0.03 or verdict == "verified")
        consistent = "n/a" if MNIST_KNOWN[prop][1] == "verified" else str(cert.radius_lower <= 0.05)
        verdicts.add(prop, spec.label, cert.radius_lower, cert.method, f"{verdict} ({elapsed:.2f} s)",
                     MNIST_KNOWN[prop][0], consistent)
    mnist_cache: dict = {}
    mean_s, _ = _bracket_rows(brackets, "mnist-net_256x2 (vnnlib centres), default config", model, inputs, 0.1,
                              domain, config, cache=mnist_cache)
    _bracket_rows(brackets, "mnist-net_256x2 (vnnlib centres), CROWN only", model, inputs, 0.1, domain,
                  CertifyConfig(method="crown"), cache=mnist_cache)
    report.goals.append(Goal("under 1 s per input on CPU for mnist-net_256x2 (default config)", f"{mean_s:.2f} s",
                             mean_s < 1.0))
    report.goals.append(Goal("certified at eps 0.03: all five (complete verifiers: 5; plain CROWN: 2)",
                             f"{certified_003}/5", certified_003 == 5))
    demo = REPO_ROOT / "saferisk" / "demo"
    if (demo / "digits_test.npz").exists():
        data = np.load(demo / "digits_test.npz")
        count = 5 if quick else 10  # the exact MILP of the digits MLP takes ~5 s per input
        X, y = torch.tensor(data["X"][:count], dtype=torch.float64), data["y"][:count]
        for name in ("digits_mlp", "digits_cnn"):
            if (demo / f"{name}.onnx").exists():
                net = load_model(demo / f"{name}.onnx")
                digits = [(X[i], int(y[i])) for i in range(count)]
                dom = Domain.scalar(0.0, 1.0, X.shape[1])
                mlp = name == "digits_mlp"
                cache: dict = {}
                seconds, _ = _bracket_rows(brackets, f"{name}, default config", net, digits, 0.5, dom, config, exact=mlp,
                                           cache=cache)
                if mlp:
                    _bracket_rows(brackets, f"{name}, 0.3 s budget", net, digits, 0.5, dom,
                                  CertifyConfig(time_budget_s=0.3), exact=True, cache=cache)
                    _bracket_rows(brackets, f"{name}, CROWN only", net, digits, 0.5, dom, CertifyConfig(method="crown"),
                                  cache=cache)
    report.tables += [brackets, verdicts]
    acas = Table("ACAS Xu: `saferisk verify` (search, then input-splitting BaB) beside the VNN-COMP 2021 verdicts",
                 ["network", "property", "result", "found by", "seconds", "known"])
    timeout = 10.0 if quick else 60.0
    brackets.notes.append("mean lower/exact: the exact L-inf radius from a MILP (benchmarks/exact.py); exact / witness "
                          "says how loose the witness (radius_upper) itself is")
    proved = falsified = 0
    for net in ("1_1", "2_1"):
        acas_model = load_model(shared_path("vnncomp", "acasxu", f"ACASXU_run2a_{net}_batch_2000.onnx"))
        for prop in (1, 2, 3, 4):
            spec = load_vnnlib(shared_path("vnncomp", "acasxu", f"prop_{prop}.vnnlib"))
            result = verify_spec(acas_model, spec, timeout_s=timeout, seed=0)
            known = ACAS_KNOWN[(net, prop)]
            acas.add(net, prop, result.result, result.method or "-", result.seconds, known)
            if (result.result, known) in (("unsat", "counterexample"), ("sat", "verified")):
                raise AssertionError(f"UNSOUND: ACAS Xu {net} prop {prop}: {result.result}, known {known}")
            proved += int(result.result == "unsat")
            falsified += int(result.result == "sat")
    acas.notes.append(f"per-instance timeout {timeout:.0f} s (the bounds get half of what the searches leave); "
                      "unsat = proved safe, sat = a counterexample re-checked on the model, unknown = neither in time")
    report.tables.append(acas)
    report.goals.append(Goal("ACAS Xu: verify the 7 safe instances", f"{proved}/7", proved == 7))
    report.goals.append(Goal("ACAS Xu: falsify the unsafe instance (2_1 property 2)", f"{falsified}/1", falsified == 1))
    return report


def main() -> None:
    try:
        report = run(quick="--quick" in sys.argv)
    except Skip as exc:
        print(f"skipped: {exc}")
        return
    print(report.markdown())


if __name__ == "__main__":
    main()
