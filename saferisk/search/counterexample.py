"""Counterexample search in a VNN-LIB input box (the search half of `saferisk verify`).

A counterexample is an input inside the box whose output satisfies the unsafe assertion
U = OR_j {y : C_j y <= d_j}. Every search here runs the model through a `WatchedModel` that
checks each output batch: the first unsafe output ends the search at once (no shrinking is
needed for sat) and so does the deadline; the caller re-checks the candidate
(`saferisk.verify.check_counterexample`).

  search_box   find_witness over B_inf(box centre, 1) in units of the half-widths, inside the box
  attack_box   disjunct-targeted PGD from fixed starts (the box's lower and upper vertices, a
               graph's first-layer corners) and random starts; for a model without gradients
               (onnxruntime only) on finite-difference gradients
               (saferisk.search.finite_difference), every difference row watched too
"""

from __future__ import annotations

import time

import numpy as np
import torch

from saferisk.data.domain import Domain
from saferisk.data.vnnlib import VnnlibSpec
from saferisk.properties.vnnlib import vnnlib_unsafe
from saferisk.search.config import SearchConfig
from saferisk.search.finite_difference import FiniteDifferences, has_gradients
from saferisk.search.region import Evaluator, Region
from saferisk.search.witness import find_witness

MIN_UNIT = 1e-9  # half-widths of zero-width input intervals are clamped to this
WATCH_ROWS = 8192  # forward rows per watched batch: the deadline and a counterexample are seen this often


class _Stop(Exception):
    """Raised inside a search to end it: a counterexample was seen, or time is up."""


class WatchedModel:
    """A model proxy for the search: checks every output batch for the unsafe condition (the
    first unsafe input ends the search at once: no shrinking needed for sat) and stops the
    search at the deadline."""

    def __init__(self, model, spec: VnnlibSpec, deadline: float):
        self._model, self._deadline = model, deadline
        self._C = [torch.as_tensor(C) for C, _ in spec.unsafe_rows()]
        self._d = [torch.as_tensor(d) for _, d in spec.unsafe_rows()]
        self.candidate: torch.Tensor | None = None
        self.evaluations = 0

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
            raise _Stop

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of x, run and watched WATCH_ROWS rows at a time."""
        outputs = []
        for part in torch.split(x, WATCH_ROWS):
            outputs.append(self._model.forward_flat(part))
            self._watch(part, outputs[-1])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def forward_flat_grad(self, x: torch.Tensor) -> torch.Tensor:
        z = self._model.forward_flat_grad(x)
        self._watch(x, z)
        return z


def _box_units(spec: VnnlibSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower, upper, centre, half-widths clamped to MIN_UNIT) of the input box, float64."""
    lower = torch.as_tensor(spec.lower, dtype=torch.float64)
    upper = torch.as_tensor(spec.upper, dtype=torch.float64)
    return lower, upper, (lower + upper) / 2.0, ((upper - lower) / 2.0).clamp_min(MIN_UNIT)


def search_box(model, spec: VnnlibSpec, deadline: float, seed: int, budget: int) -> WatchedModel:
    """find_witness over B_inf(box centre, 1) in units of the half-widths, inside the box,
    stopped at the first unsafe output or at the deadline; returns the watcher."""
    lower, upper, centre, unit = _box_units(spec)
    z0 = model.forward_flat(centre.reshape(1, -1).to(model.dtype)).to("cpu", torch.float64).reshape(-1)
    bound = vnnlib_unsafe(spec).bind(z0)
    watched = WatchedModel(model, spec, deadline)
    try:
        find_witness(watched, bound, centre, 1.0, "inf", Domain(lower, upper), unit=unit,
                     config=SearchConfig(budget=int(budget), black_box_budget=int(budget)), seed=seed)
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


def differentiable_outputs(watched: WatchedModel, spec: VnnlibSpec, seed: int):
    """Differentiable outputs of rows for the attack: the model's own forward_flat_grad, or,
    for a model without gradients, finite differences (FiniteDifferences over the region
    B_inf(box centre, 1) in units of the half-widths, i.e. the box; coordinate-wise up to
    finite_difference.COORDINATE_LIMIT inputs, MNIST's 784 included: random-direction estimates
    miss mnist-net_256x2 prop_0 at eps 0.05) whose every forward row, differences included, runs through
    `watched` (counted, checked for a counterexample, stopped at the deadline)."""
    if has_gradients(watched):
        return watched.forward_flat_grad
    lower, upper, centre, unit = (t.to(watched.device, watched.dtype) for t in _box_units(spec))
    evaluator = Evaluator(None, lambda z: z, forward=watched.forward_flat)
    region = Region(centre, 1.0, "inf", lower, upper, unit)
    return FiniteDifferences(evaluator, region, seed=seed).outputs


def _disjunct_pgd(watched: WatchedModel, spec: VnnlibSpec, starts: torch.Tensor, steps: int,
                  deadline: float, outputs) -> None:
    """Projected sign-gradient descent of each disjunct's s_j(y) = max_r (C_j[r] y - d_j[r])
    from every start (a disjunct-targeted attack: the min over disjuncts only follows the one
    that is smallest now), with gradients through `outputs` (differentiable_outputs). Step
    sizes fall from 1/4 to 1/100 of the box width. An unsafe output ends the search through
    the watcher."""
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
            y = outputs(x.to(watched.dtype)).to("cpu", torch.float64)
            s = (torch.einsum("brm,bm->br", A_x, y) + off_x).max(dim=1).values
            (grad,) = torch.autograd.grad(s.sum(), x)
        size = 0.25 * (1 - step / steps) + 0.01
        x = torch.minimum(torch.maximum(x.detach() - size * width * torch.sign(grad), lower), upper)
    watched.forward_flat(x.to(watched.dtype))


def fixed_starts(model, spec: VnnlibSpec) -> torch.Tensor:
    """The deterministic starts of the attack: the box's lower and upper vertices (no weights
    needed: for an image, the uniformly darker and brighter inputs; mnist-net_256x2 prop_0 at
    eps 0.05 falls from the lower vertex, never from 600 random starts), then, for a graph
    model, its first-layer corners."""
    lower, upper, _, _ = _box_units(spec)
    vertices = torch.stack([lower, upper])
    corners = first_layer_corners(model.graph, lower, upper) if model.graph is not None else None
    return vertices if corners is None else torch.cat([vertices, corners])


def attack_box(model, spec: VnnlibSpec, deadline: float, seed: int, fixed: bool, steps: int = 50) -> WatchedModel:
    """Disjunct-targeted PGD from the fixed starts (if `fixed`; first, in their own batches:
    few rows, cheap finite differences), then from 8 random starts; a model without gradients
    gets finite-difference gradients (differentiable_outputs)."""
    lower, upper, _, _ = _box_units(spec)
    generator = torch.Generator().manual_seed(int(seed))
    random_starts = lower + (upper - lower) * torch.rand(8, spec.n_inputs, generator=generator, dtype=torch.float64)
    groups = (fixed_starts(model, spec), random_starts) if fixed else (random_starts,)
    watched = WatchedModel(model, spec, deadline)
    outputs = differentiable_outputs(watched, spec, seed)
    try:
        for starts in groups:
            for chunk in torch.split(starts, max(1, 2048 // max(1, len(spec.unsafe)))):
                _disjunct_pgd(watched, spec, chunk, steps, deadline, outputs)
    except _Stop:
        pass
    return watched
