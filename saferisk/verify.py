"""VNN-COMP's question for one property (the library behind `saferisk verify`).

Answers:
  sat      a counterexample: an input inside the VNN-LIB input box whose output satisfies the
           unsafe output assertion, found by search and RE-CHECKED by a fresh forward pass;
  unsat    the property is PROVED on the whole box by certified bounds (saferisk.bounds);
  unknown  neither within the time limit.
Errors (malformed spec, model/spec size mismatch) raise SaferiskError.

The search (`saferisk.search.counterexample`) looks for w(y) = min_j max_r (C_j[r] y - d_j[r])
<= 0 over the box, i.e. find_witness over B_inf(centre, 1) in units of the box half-widths,
intersected with the box, and disjunct-targeted gradient attacks (finite-difference gradients
for a model run by onnxruntime only); this module orchestrates:
search, then prove, then the result (every counterexample re-checked here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from saferisk.data.vnnlib import VnnlibSpec
from saferisk.errors import DataError, SaferiskError
from saferisk.models.model import recheck_outputs
from saferisk.properties.vnnlib import vnnlib_unsafe
from saferisk.search.counterexample import WatchedModel, attack_box, search_box

FIRST_BUDGET = 4096  # forward evaluations of the quick first search round
SEARCH_BUDGET = 200_000  # per later round (each round a fresh seed, until the deadline)
ATTACK_SHARE = 0.15  # of the timeout, the most one attack round may take (at least MIN_ROUND_S)
MIN_ROUND_S = 0.5


@dataclass
class Counterexample:
    """An input x in the box and its output y = f(x) in the unsafe set (disjunct `disjunct`)."""

    input: list[float]
    output: list[float]
    disjunct: int
    rechecked_by: str = "torch"  # the runtimes whose fresh forward pass found f(x) unsafe

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "disjunct": self.disjunct,
                "input_in_box": True, "output_unsafe": True, "rechecked_by": self.rechecked_by}


@dataclass
class VerifyResult:
    result: str  # sat | unsat | unknown
    seconds: float
    counterexample: Counterexample | None = None
    method: str | None = None  # how the answer was reached: search / bounds
    evaluations: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"result": self.result, "seconds": round(self.seconds, 4), "method": self.method,
                "counterexample": None if self.counterexample is None else self.counterexample.to_dict(),
                "evaluations": self.evaluations, "notes": list(self.notes)}


def check_counterexample(model, spec: VnnlibSpec, x: torch.Tensor) -> Counterexample | None:
    """Fresh forward pass: a Counterexample only if x is inside the box (exactly) and f(x) is
    finite and satisfies the unsafe output assertion C_j y <= d_j for some disjunct j, in
    saferisk's forward pass and, for a model read into saferisk's graph, in onnxruntime too."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1).cpu()
    x_model = x.to(model.dtype)
    x_used = x_model.to(torch.float64).numpy()  # the input the model actually sees
    if not spec.input_inside(x_used):
        return None
    y = model.forward_flat(x_model.reshape(1, -1)).to("cpu", torch.float64).reshape(-1).numpy()
    if not np.all(np.isfinite(y)):
        return None
    z_ref, rechecked = recheck_outputs(model, x_model.reshape(1, -1))
    y_ref = None if z_ref is None else z_ref.reshape(-1).numpy()
    for j, (C, d) in enumerate(spec.unsafe_rows()):
        if not np.all(C @ y <= d):
            continue
        if y_ref is not None and not (np.all(np.isfinite(y_ref)) and np.all(C @ y_ref <= d)):
            continue  # onnxruntime, the independent runtime, does not see this disjunct violated
        return Counterexample([float(v) for v in x_used], [float(v) for v in y], j, rechecked)
    return None


def _prove(model, spec: VnnlibSpec, timeout_s: float) -> tuple[bool, str | None]:
    """(True, None) when certified bounds prove the box safe; else (False, why not)."""
    try:
        from saferisk.bounds import CertifyConfig, verify_box
    except ImportError:
        return False, "certified bounds (saferisk.bounds.verify_box) are not available"
    lower = torch.as_tensor(spec.lower, dtype=torch.float64)
    upper = torch.as_tensor(spec.upper, dtype=torch.float64)
    centre = (lower + upper) / 2.0
    z0 = model.forward_flat(centre.reshape(1, -1).to(model.dtype)).to("cpu", torch.float64).reshape(-1)
    minmax = vnnlib_unsafe(spec).bind(z0).spec()
    if model.bounds_unavailable:
        return False, f"bounds: {model.bounds_unavailable}"
    try:
        answer = verify_box(model.graph, minmax, lower, upper, max(0.0, timeout_s),
                            config=CertifyConfig().on_device_of(model))
    except SaferiskError as exc:  # e.g. an operation the bounds do not support
        return False, f"bounds: {exc}"
    return answer == "verified", None if answer == "verified" else f"bounds: {answer}"


def verify_spec(model, spec: VnnlibSpec, timeout_s: float = 60.0, seed: int = 0) -> VerifyResult:
    """sat / unsat / unknown for one VNN-LIB spec within about `timeout_s` seconds.

    Order: a quick search round (most falsifiable properties fall here), a disjunct-targeted
    gradient attack from the fixed starts (box vertices, first-layer corners; see
    counterexample.attack_box), certified bounds with half the time left, then attack and
    search rounds with fresh seeds until the deadline (each attack round at most ATTACK_SHARE
    of the timeout, so that the search rounds keep their turn). A model without gradients
    (onnxruntime only) is attacked on finite-difference gradients and has no bounds: its first
    attack gets the half of the time left that the bounds would get."""
    start = time.perf_counter()
    deadline = start + float(timeout_s)
    if model.n_inputs != spec.n_inputs:
        raise DataError(f"{spec.source}: the spec has {spec.n_inputs} inputs, the model takes {model.n_inputs}")
    n_out = model.n_outputs
    if n_out != spec.n_outputs:
        raise DataError(f"{spec.source}: the spec has {spec.n_outputs} outputs, the model gives {n_out}")
    notes: list[str] = []
    evaluations = 0

    def searched(watched: WatchedModel) -> VerifyResult | None:
        nonlocal evaluations
        evaluations += watched.evaluations
        if watched.candidate is None:
            return None
        cex = check_counterexample(model, spec, watched.candidate)
        if cex is None:
            notes.append("a search candidate failed the independent re-check")
            return None
        return VerifyResult("sat", time.perf_counter() - start, cex, "search", evaluations, notes)

    def attack_deadline() -> float:
        return min(deadline, time.perf_counter() + max(ATTACK_SHARE * timeout_s, MIN_ROUND_S))

    quick_deadline = min(deadline, start + max(0.1 * timeout_s, MIN_ROUND_S))
    if (result := searched(search_box(model, spec, quick_deadline, seed, FIRST_BUDGET))) is not None:
        return result
    first_attack_deadline = attack_deadline()
    if model.bounds_unavailable:  # no bounds phase: the first attack takes its half of the time left
        first_attack_deadline = max(first_attack_deadline, (time.perf_counter() + deadline) / 2)
    if (result := searched(attack_box(model, spec, first_attack_deadline, seed, fixed=True))) is not None:
        return result
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        proved, why = _prove(model, spec, remaining / 2.0)
        if proved:
            return VerifyResult("unsat", time.perf_counter() - start, None, "bounds", evaluations, notes)
        if why:
            notes.append(why)
    round_index = 1
    while time.perf_counter() < deadline:
        for run in (lambda: attack_box(model, spec, attack_deadline(), seed + round_index, fixed=False),
                    lambda: search_box(model, spec, deadline, seed + round_index, SEARCH_BUDGET)):
            if (result := searched(run())) is not None:  # each run checked before the next starts
                return result
        round_index += 1
    return VerifyResult("unknown", time.perf_counter() - start, None, None, evaluations, notes)


def vnncomp_result_text(result: VerifyResult) -> str:
    """The VNN-COMP result file: the answer, and for sat the assignment ((X_i v) ... (Y_j v))."""
    lines = [result.result]
    if result.counterexample is not None:
        values = [f"(X_{i} {v!r})" for i, v in enumerate(result.counterexample.input)]
        values += [f"(Y_{i} {v!r})" for i, v in enumerate(result.counterexample.output)]
        lines.append("(" + "\n ".join(values) + ")")
    return "\n".join(lines) + "\n"
