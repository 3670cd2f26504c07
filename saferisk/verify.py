"""VNN-COMP's question for one property (the library behind `saferisk verify`).

Answers:
  sat      a counterexample: an input inside the VNN-LIB input box whose output satisfies the
           unsafe output assertion, found by search and RE-CHECKED by a fresh forward pass;
  unsat    the property is PROVED on the whole box by certified bounds (saferisk.bounds);
  unknown  neither within the time limit.
Errors (malformed spec, model/spec size mismatch) raise SaferiskError.

The search looks for w(y) = min_j max_r (C_j[r] y - d_j[r]) <= 0 over the box, i.e.
find_witness over B_inf(centre, 1) in units of the box half-widths, intersected with the box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from saferisk.data.domain import Domain
from saferisk.data.vnnlib import VnnlibSpec
from saferisk.errors import DataError, SaferiskError
from saferisk.models.model import recheck_outputs

MIN_UNIT = 1e-9  # half-widths of zero-width input intervals are clamped to this
FIRST_BUDGET = 4096  # forward evaluations of the quick first search round
SEARCH_BUDGET = 200_000  # per later round (each round a fresh seed, until the deadline)


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


class _Stop(Exception):
    """Raised inside a search to end it: a counterexample was seen, or time is up."""


class _WatchedModel:
    """A model proxy for the search: checks every output batch for the unsafe condition (the
    first unsafe input ends the search at once: no shrinking needed for sat) and stops the
    search at the deadline."""

    def __init__(self, model, spec: VnnlibSpec, deadline: float):
        self._model, self._deadline = model, deadline
        self._C = [torch.as_tensor(C) for C, _ in spec.unsafe_rows()]
        self._d = [torch.as_tensor(d) for _, d in spec.unsafe_rows()]
        self.candidate: torch.Tensor | None = None
        self.evaluations = 0
        self.timed_out = False

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _watch(self, x: torch.Tensor, z: torch.Tensor) -> None:
        self.evaluations += int(x.shape[0])
        y = z.detach().to("cpu", torch.float64)
        unsafe = torch.zeros(y.shape[0], dtype=torch.bool)
        for C, d in zip(self._C, self._d):
            unsafe |= (y @ C.T <= d).all(dim=1)
        unsafe &= torch.isfinite(y).all(dim=1)
        if bool(unsafe.any()):
            self.candidate = x.detach()[int(unsafe.nonzero()[0])].to("cpu", torch.float64).clone()
            raise _Stop
        if time.perf_counter() > self._deadline:
            self.timed_out = True
            raise _Stop

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        z = self._model.forward_flat(x)
        self._watch(x, z)
        return z

    def forward_flat_grad(self, x: torch.Tensor) -> torch.Tensor:
        z = self._model.forward_flat_grad(x)
        self._watch(x, z)
        return z


def _search(model, spec: VnnlibSpec, deadline: float, seed: int, budget: int) -> _WatchedModel:
    """find_witness over B_inf(box centre, 1) in units of the half-widths, inside the box,
    stopped at the first unsafe output or at the deadline; returns the watcher."""
    from saferisk.search import SearchConfig, find_witness

    lower = torch.as_tensor(spec.lower, dtype=torch.float64)
    upper = torch.as_tensor(spec.upper, dtype=torch.float64)
    centre = (lower + upper) / 2.0
    unit = ((upper - lower) / 2.0).clamp_min(MIN_UNIT)
    z0 = model.forward_flat(centre.reshape(1, -1).to(model.dtype)).to("cpu", torch.float64).reshape(-1)
    bound = spec.unsafe.bind(z0)
    watched = _WatchedModel(model, spec, deadline)
    try:
        find_witness(watched, bound, centre, 1.0, "inf", Domain(lower, upper), unit=unit,
                     config=SearchConfig(budget=int(budget)), seed=seed)
    except _Stop:
        pass
    return watched


_PREFIX_OPS = ("affine", "flatten", "reshape", "identity")


def _flat_param(value, shape: tuple[int, ...], default: float) -> torch.Tensor:
    """An elementwise parameter broadcast to one sample's shape, flattened (float64, CPU)."""
    n = int(np.prod(shape))
    if value is None:
        return torch.full((n,), default, dtype=torch.float64)
    return torch.broadcast_to(value.detach().to("cpu", torch.float64), shape).reshape(-1)


def first_layer_corners(graph, lower: torch.Tensor, upper: torch.Tensor, max_units: int = 256) -> torch.Tensor | None:
    """Box vertices that switch first-layer ReLUs on and off: for each first-layer unit whose
    pre-activation z_k = w_k . x + b_k changes sign on the box, the vertices maximising and
    minimising z_k (x_i = upper_i where w_ki > 0, else lower_i, and the opposite). Gradient
    search cannot enter the region where a unit is off at its start (zero gradient there);
    these starts cover each unit's active side. None when the graph does not begin with a
    `linear` layer (after elementwise affine / flatten / reshape / identity ops)."""
    scale = torch.ones(graph.n_inputs, dtype=torch.float64)
    shift = torch.zeros(graph.n_inputs, dtype=torch.float64)
    shape = tuple(graph.input_shape)
    for node in graph.nodes:
        if node.op == "linear":
            W = node.params["weight"].detach().to("cpu", torch.float64)
            if W.shape[1] != graph.n_inputs:
                return None
            bias = node.params.get("bias")
            b = torch.zeros(W.shape[0], dtype=torch.float64) if bias is None else bias.detach().to("cpu", torch.float64)
            W_eff, b_eff = W * scale, W @ shift + b  # z = W (scale * x + shift) + b
            centre, half = (lower + upper) / 2, (upper - lower) / 2
            z_mid, z_rad = W_eff @ centre + b_eff, W_eff.abs() @ half
            unstable = ((z_mid - z_rad < 0) & (z_mid + z_rad > 0)).nonzero().flatten()
            if unstable.numel() == 0:
                return None
            order = z_rad[unstable].argsort(descending=True)[:max_units]
            signs = W_eff[unstable[order]] > 0
            return torch.cat([torch.where(signs, upper, lower), torch.where(signs, lower, upper)])
        if node.op not in _PREFIX_OPS:
            return None
        if node.op == "affine":
            try:
                a, c = (_flat_param(node.params.get(k), shape, default) for k, default in (("scale", 1.0), ("shift", 0.0)))
            except RuntimeError:  # a parameter that does not broadcast to one sample
                return None
            scale, shift = scale * a, shift * a + c
        elif node.op == "reshape":
            shape = tuple(node.attrs.get("shape", shape))
        elif node.op == "flatten":
            shape = (graph.n_inputs,)
    return None


def _disjunct_pgd(watched: "_WatchedModel", spec: VnnlibSpec, starts: torch.Tensor, steps: int,
                  deadline: float) -> None:
    """Projected sign-gradient descent of each disjunct's s_j(y) = max_r (C_j[r] y - d_j[r])
    from every start (a disjunct-targeted attack: the min over disjuncts only follows the one
    that is smallest now). Step sizes fall from 1/4 to 1/100 of the box width. An unsafe
    output ends the search through the watcher."""
    lower = torch.as_tensor(spec.lower, dtype=torch.float64)
    upper = torch.as_tensor(spec.upper, dtype=torch.float64)
    rows = spec.unsafe_rows()
    J = len(rows)
    x = starts.to(torch.float64).repeat_interleave(J, dim=0)
    which = torch.arange(J).repeat(starts.shape[0])
    R = max(C.shape[0] for C, _ in rows)
    m = spec.n_outputs
    A = torch.zeros(J, R, m, dtype=torch.float64)
    off = torch.full((J, R), float("-inf"), dtype=torch.float64)
    for j, (C, d) in enumerate(rows):
        A[j, : C.shape[0]] = torch.as_tensor(C)
        off[j, : C.shape[0]] = -torch.as_tensor(d)
    A_x, off_x = A[which], off[which]
    width = upper - lower
    for step in range(steps):
        if time.perf_counter() > deadline:
            return
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = watched.forward_flat_grad(x.to(watched.dtype)).to("cpu", torch.float64)
            s = (torch.einsum("brm,bm->br", A_x, y) + off_x).max(dim=1).values
            (grad,) = torch.autograd.grad(s.sum(), x)
        size = 0.25 * (1 - step / steps) + 0.01
        x = torch.minimum(torch.maximum(x.detach() - size * width * torch.sign(grad), lower), upper)
    watched.forward_flat(x.to(watched.dtype))


def _attack(model, spec: VnnlibSpec, deadline: float, seed: int, corners: bool, steps: int = 50) -> _WatchedModel:
    """Disjunct-targeted PGD from random starts (and first-layer corner starts if `corners`)."""
    lower = torch.as_tensor(spec.lower, dtype=torch.float64)
    upper = torch.as_tensor(spec.upper, dtype=torch.float64)
    generator = torch.Generator().manual_seed(int(seed))
    random_starts = lower + (upper - lower) * torch.rand(8, spec.n_inputs, generator=generator, dtype=torch.float64)
    corner_starts = first_layer_corners(model.graph, lower, upper) if corners and model.graph is not None else None
    starts = random_starts if corner_starts is None else torch.cat([corner_starts, random_starts])
    watched = _WatchedModel(model, spec, deadline)
    try:
        for chunk in torch.split(starts, max(1, 2048 // max(1, len(spec.unsafe.unsafe)))):
            _disjunct_pgd(watched, spec, chunk, steps, deadline)
    except _Stop:
        pass
    except RuntimeError:  # a model without gradients: the black-box search still runs
        pass
    return watched


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
    minmax = spec.unsafe.bind(z0).spec()
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
    gradient attack from first-layer corner starts, certified bounds with half the time left,
    then attack and search rounds with fresh seeds until the deadline."""
    start = time.perf_counter()
    deadline = start + float(timeout_s)
    if model.n_inputs != spec.n_inputs:
        raise DataError(f"{spec.source}: the spec has {spec.n_inputs} inputs, the model takes {model.n_inputs}")
    n_out = model.n_outputs
    if n_out != spec.n_outputs:
        raise DataError(f"{spec.source}: the spec has {spec.n_outputs} outputs, the model gives {n_out}")
    notes: list[str] = []
    evaluations = 0

    def searched(watched: _WatchedModel) -> VerifyResult | None:
        nonlocal evaluations
        evaluations += watched.evaluations
        if watched.candidate is None:
            return None
        cex = check_counterexample(model, spec, watched.candidate)
        if cex is None:
            notes.append("a search candidate failed the independent re-check")
            return None
        return VerifyResult("sat", time.perf_counter() - start, cex, "search", evaluations, notes)

    quick_deadline = min(deadline, start + max(0.1 * timeout_s, 0.5))
    if (result := searched(_search(model, spec, quick_deadline, seed, FIRST_BUDGET))) is not None:
        return result
    attack_deadline = min(deadline, time.perf_counter() + max(0.15 * timeout_s, 0.5))
    if (result := searched(_attack(model, spec, attack_deadline, seed, corners=True))) is not None:
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
        for watched in (_attack(model, spec, deadline, seed + round_index, corners=False),
                        _search(model, spec, deadline, seed + round_index, SEARCH_BUDGET)):
            if (result := searched(watched)) is not None:
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
