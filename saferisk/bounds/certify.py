"""Certified lower bound of the maximum safe radius, box verification and output ranges.

certify_radius: the largest d in [0, max_radius] (capped by a witness radius) at which a sound
lower bound of s over B_p(x0, d) ∩ box is > 0. Large piecewise-linear networks (more ReLUs than
crown_max_neurons) start from the radius of the affine piece around x0 (forward.py,
"linear-region"), one exact forward pass. Since the balls are nested, a certificate at d
holds for every smaller radius, so the largest certified radius found is a valid lower bound of
r*, whatever the search did. The search bounds a grid of radii in one batched pass per round
(CROWN, whose bound already includes IBP's), then refines with alpha-CROWN and finally branch
and bound (bisection between the certified radius and the witness, each BaB radius with half
the work left) while the budget lasts (saferisk.bounds.budget: work units, the same on any
machine, and a wall-clock safety cap); it stops as soon as the certified radius is within
`tolerance` of the cap (the witness radius), as nothing is left to gain.
"""

from __future__ import annotations

import math
import time

import torch

from saferisk.bounds.bab import branch_and_bound
from saferisk.bounds.config import Certificate, CertifyConfig
from saferisk.bounds.engine import BoundEngine, BoundsDeadline, UnsupportedGraph
from saferisk.bounds.forward import linear_region_radius
from saferisk.bounds.methods import rows_bound
from saferisk.bounds.sets import InputRegion
from saferisk.bounds.spec import SpecRows, spec_value
from saferisk.errors import DataError
from saferisk.models.graph import Graph
from saferisk.properties.base import MinMaxSpec

_ENGINES: dict[tuple[int, str], BoundEngine] = {}


def _engine(graph: Graph, device: str | None) -> BoundEngine:
    """The prepared engine of a graph (cached per graph object and device)."""
    key = (id(graph), str(device))
    cached = _ENGINES.get(key)
    if cached is None or cached._source is not graph:
        cached = BoundEngine(graph, device)
        cached._source = graph
        if len(_ENGINES) > 8:
            _ENGINES.clear()
        _ENGINES[key] = cached
    return cached


def _vector(value, engine: BoundEngine, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=engine.dtype).to(engine.device).reshape(-1)
    if t.numel() == 1 and n > 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise DataError(f"{what} has {t.numel()} values, the model has {n} input features")
    return t


class _RadiusProblem:
    """Bounds of s over B_p(x0, d) ∩ box for batches of radii d."""

    def __init__(self, engine, rows, x0, norm, lower, upper, unit, config, budget):
        self.engine, self.rows, self.x0, self.norm = engine, rows, x0, norm
        self.lower, self.upper, self.unit, self.config, self.budget = lower, upper, unit, config, budget

    def inset(self, radii: torch.Tensor) -> InputRegion:
        return InputRegion.ball(self.x0, radii, self.norm, self.lower, self.upper, self.unit)

    def certified(self, radii: list[float], method: str, budget=None) -> list[bool]:
        """Which radii are certified by `method` (all radii in one batched pass; BaB: one radius)."""
        budget = self.budget if budget is None else budget
        try:
            return self._certified(radii, method, budget)
        except BoundsDeadline:  # the budget ended inside a pass: nothing certified by it
            return [False] * len(radii)

    def _certified(self, radii: list[float], method: str, budget) -> list[bool]:
        r = torch.tensor(radii, dtype=self.engine.dtype, device=self.engine.device)
        inset = self.inset(r)
        if method == "bab":
            results = []
            for k in range(len(radii)):
                single = inset.select(torch.tensor([k], device=r.device))
                verdict = branch_and_bound(self.engine, self.rows, single, budget,
                                           self.config.input_split_max_dim, self.config.bab_batch,
                                           iterations=self.config.bab_iterations)
                results.append(verdict == "verified")
            return results
        row_lb = rows_bound(self.engine, self.rows, inset, method, alpha_iterations=self.config.alpha_iterations,
                            alpha_lr=self.config.alpha_lr, budget=budget,
                            alpha_intermediate=self.config.optimise_intermediate(self.engine.relu_neurons))
        return [bool(v) for v in (self.rows.combine(row_lb) > 0).tolist()]


def _close_enough(lo: float, top: float, tol: float) -> bool:
    """The bracket [lo, top] is tight: top - lo <= tol * top."""
    return top - lo <= tol * top


def _search(problem: _RadiusProblem, method: str, lo: float, hi: float, tol: float, grid: int,
            floor: float, top: float | None = None, geometric: bool = True) -> tuple[float, float]:
    """Largest certified radius in (lo, hi] by batched grid bisection: (certified, failed above).

    Each round bounds `grid` radii in one batched pass and keeps [largest certified, smallest
    failed]; it ends when the bracket is within `tol` (relative), when the budget is over, or at hi.
    The search starts below `top` (a radius a weaker method failed at) and moves up toward hi
    while everything it tries is certified.
    """
    top = hi if top is None else min(hi, top)
    for _ in range(60):
        if _close_enough(lo, top, tol) or top <= floor or problem.budget.over():
            break
        if lo <= 0 and geometric:  # no idea of the scale: top / 2^k
            radii = [top * 2.0 ** (-k) for k in range(grid - 1, -1, -1)]
        elif lo <= 0:  # top is a witness radius: the answer is usually a good fraction of it
            radii = [top * (k + 1) / grid for k in range(grid)]
        else:
            radii = [lo + (top - lo) * (k + 1) / grid for k in range(grid)]
        ok = problem.certified(radii, method)
        certified = [r for r, good in zip(radii, ok) if good]
        if certified:
            lo = max(lo, max(certified))
        above = [r for r, good in zip(radii, ok) if not good and r > lo]
        if above:
            top = min(above)
        elif top < hi:  # everything certified up to top: look higher
            top = min(hi, 2 * lo + tol * hi)
        else:
            top = lo
    return lo, max(top, lo)


def _bab_search(problem: _RadiusProblem, lo: float, top: float, tol: float, witness: bool = True) -> float:
    """Branch and bound on single radii inside (lo, top): bisection, each radius with half of the
    work left, so that a radius BaB cannot prove does not take it all and the work goes where
    the gap between certificate and top is. With top a witness radius (`witness`), the first try
    is the radius that would end the search (r* is usually close to the witness)."""
    for attempt in range(30):
        if _close_enough(lo, top, tol) or problem.budget.over():
            break
        radius = lo + (top - lo) / 2 if lo > 0 else top / 2
        if attempt == 0 and lo > 0 and witness:  # first try the radius that ends the search
            radius = max(radius, top * (1 - 0.9 * tol))
        if problem.certified([radius], "bab", problem.budget.share(0.5))[0]:
            lo = radius
        else:
            top = radius
    return lo


def _memory_note(reason: str | None, used_mb: int, need_mb: int) -> str | None:
    """A search's reason, saying so where it ran within less memory than its bounds need."""
    if reason is None or used_mb >= need_mb:
        return reason
    return f"{reason} (certification memory {used_mb} MiB of the {need_mb} MiB its bounds need in one pass)"


def certify_radius(graph: Graph, spec: MinMaxSpec | None, x0, norm: str, max_radius: float, domain, unit=None,
                   config: CertifyConfig | None = None, upper_hint: float | None = None) -> Certificate:
    """Certified lower bound of the maximum safe radius around x0 (see the module docstring).

    upper_hint: a radius known to be unsafe (the witness radius) caps the search; the search
    stops as soon as the certified radius is within `tolerance` of the cap (nothing to gain),
    else the ladder (CROWN, alpha-CROWN, BaB) narrows its bracket while the budget lasts.
    """
    start = time.perf_counter()
    config = config or CertifyConfig()
    budget, memory = config.budget(), (0, 0)  # memory: (MiB used, MiB needed) once the engine is set up

    def done(radius, method, reason, searched: bool = False):
        return Certificate(radius, method, _memory_note(reason, *memory) if searched else reason,
                           time.perf_counter() - start,
                           budget_exhausted=searched and (budget.exhausted() or budget.capped),
                           clock_capped=searched and budget.capped, work=budget.used,
                           memory_mb=memory[0], memory_need_mb=memory[1])

    if spec is None:
        return done(None, None, "the property has no linear spec for certified bounds")
    try:
        engine = _engine(graph, config.device)
        memory = config.apply_limits(engine, budget)
        rows = SpecRows.from_spec(spec, engine)
    except UnsupportedGraph as exc:
        return done(None, None, str(exc))
    n = engine.n_inputs
    x0 = _vector(x0, engine, n, "x0")
    lower = _vector(domain.lower, engine, n, "domain lower")
    upper = _vector(domain.upper, engine, n, "domain upper")
    x0 = domain.check_and_clip(x0.cpu()[None], "x0")[0].to(engine.device, engine.dtype)
    unit_t = None if unit is None else _vector(unit, engine, n, "unit")
    with torch.no_grad():
        s0 = float(spec_value(engine, rows, x0[None])[0])
    if not s0 > 0:
        return done(0.0, None, f"property spec is not positive at x0 (s(x0) = {s0:.6g}); nothing to certify")
    hi = float(max_radius)
    hinted = upper_hint is not None and math.isfinite(float(upper_hint))
    if hinted:
        hi = min(hi, float(upper_hint))
    if hi <= 0:
        return done(0.0, None, "the search interval is empty (max_radius or witness radius is 0)")
    problem = _RadiusProblem(engine, rows, x0, norm, lower, upper, unit_t, config, budget)
    lo, method_lo, failed = 0.0, None, hi
    large = engine.forward_is_cheaper()  # forward bounds: n forward passes per radius
    if large:  # one exact pass first (forward.py)
        try:
            lo = min(hi, linear_region_radius(engine, rows, x0, norm, unit_t))
        except BoundsDeadline:
            lo = 0.0
        method_lo = "linear-region" if lo > 0 else None
    tol = float(config.tolerance)
    ladder = config.ladder()
    if "crown" in ladder and ladder[0] == "ibp":
        ladder = ladder[1:]  # CROWN's bound is max(CROWN, IBP): a separate IBP pass adds nothing
    floor = hi * 1e-9
    for method in ladder:
        if method_lo is not None and (budget.over() or _close_enough(lo, hi, tol)):
            break
        if method == "bab":
            # BaB can prove radii the relaxations failed at: up to the witness radius, or (no
            # witness) up to twice the radius certified so far
            found = _bab_search(problem, lo, hi if hinted else min(hi, max(failed + (failed - lo), 2 * lo)), tol,
                                witness=hinted)
        else:
            grid = config.grid_size if method in ("ibp", "crown") else max(2, config.grid_size // 2)
            if large:  # each radius costs n forward passes: fewer per round
                grid = min(grid, 2)
            top = None if method == ladder[0] else lo + 1.5 * (failed - lo) + tol * hi
            if method == ladder[0] and lo > 0:  # from the linear-region radius: look up by doubling
                top = min(hi, 2 * lo)
            found, failed = _search(problem, method, lo, hi, tol, grid, floor, top, geometric=not hinted)
        if found > lo:
            lo, method_lo = found, method
        if lo >= hi:
            break
    if method_lo is None:
        return done(0.0, None, "no radius > 0 certified within the budget (bounds too loose)", searched=True)
    return done(lo, method_lo, None, searched=not _close_enough(lo, hi, tol))


def _box_inset(engine: BoundEngine, lower, upper) -> InputRegion:
    lo = torch.as_tensor(lower, dtype=engine.dtype).to(engine.device)
    hi = torch.as_tensor(upper, dtype=engine.dtype).to(engine.device)
    n = engine.n_inputs
    if lo.numel() % n or lo.shape != hi.shape:
        raise DataError(f"the box has {lo.numel()} / {hi.numel()} bounds, the model has {n} input features")
    lo, hi = lo.reshape(-1, n), hi.reshape(-1, n)
    return InputRegion.box(lo, hi)


def bound_outputs(graph: Graph, lower, upper, method: str = "crown") -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds (lb, ub) of every graph output over the box [lower, upper] ((m,) or (B, m))."""
    engine = _engine(graph, None)
    CertifyConfig().apply_limits(engine, None)
    inset = _box_inset(engine, lower, upper)
    m = engine.n_outputs
    eye = torch.eye(m, dtype=torch.float64)
    rows = SpecRows(torch.cat([eye, -eye]).to(engine.device), torch.zeros(2 * m, dtype=engine.dtype, device=engine.device),
                    torch.arange(2 * m, device=engine.device), 2 * m, True)
    if engine.softmax_output:
        rows.on_logits = False
    row_lb = rows_bound(engine, rows, inset, method)
    lb, ub = row_lb[:, :m], -row_lb[:, m:]
    if torch.as_tensor(lower).dim() <= 1:
        return lb[0], ub[0]
    return lb, ub


def verify_box(graph: Graph, spec: MinMaxSpec, lower, upper, timeout_s: float,
               config: CertifyConfig | None = None) -> str:
    """'verified' if s > 0 on the whole box is proved within timeout_s (wall clock: VNN-COMP
    instances come with a time limit), else 'unknown'."""
    from saferisk.bounds.budget import Budget

    config = config or CertifyConfig()
    budget = Budget(None, float(timeout_s))
    try:
        engine = _engine(graph, config.device)
        config.apply_limits(engine, budget)
        rows = SpecRows.from_spec(spec, engine)
    except UnsupportedGraph:
        return "unknown"
    try:
        return _verify_box(engine, rows, spec, _box_inset(engine, lower, upper), config, budget)
    except BoundsDeadline:
        return "unknown"


def _verify_box(engine, rows, spec, inset, config, budget) -> str:
    for method in config.ladder():
        if method == "bab":
            verdict = branch_and_bound(engine, rows, inset, budget, config.input_split_max_dim, config.bab_batch,
                                       exact_spec=spec.exact, iterations=config.bab_iterations)
            return "verified" if verdict == "verified" else "unknown"
        row_lb = rows_bound(engine, rows, inset, method, alpha_iterations=config.alpha_iterations,
                            alpha_lr=config.alpha_lr, budget=budget)
        if bool((rows.combine(row_lb) > 0).all()):
            return "verified"
        if budget.over():
            break
    return "unknown"
