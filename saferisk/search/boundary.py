"""Boundary projection: move a violating input toward x0 along the linearised decision boundary.

Given a violation x_b close to the boundary of one term g_j of w - c = min_j g_j(f(x)), the
linearisation g_j(x) ~ g_j(x_b) + a.(x - x_b), a = grad g_j(x_b), puts the boundary on the
hyperplane a.(x - x0) = delta with delta = a.(x_b - x0) - g_j(x_b). The point of that
hyperplane closest to x0 in the region's norm, inside the domain box, is a closed form
(`min_norm_step`); it is evaluated with small overshoots, the closest violating candidate is
pulled back to the boundary by bisection on the segment from x0, and the step repeats (the
multi-class DeepFool / FAB step, with every candidate re-evaluated by a forward pass). For
piecewise-linear networks this reaches a locally minimal boundary point in a few steps, which
the radius bisection of `shrink_witness` would need many local searches to approach.
"""

from __future__ import annotations

import torch

from saferisk.properties.base import BoundProperty
from saferisk.search.gradient import term_gradients
from saferisk.search.region import Evaluator, Region

OVERSHOOTS = (0.0, 1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.2)  # candidates x0 + (1 + eta)(p - x0)
BLENDS = (0.9, 0.75, 0.5, 0.25, 0.1, 0.03)  # ... and x_b + beta (p - x_b) when the linearisation is poor
SEGMENT_POINTS = 16  # points per round of the segment bisection
SEGMENT_TOLERANCE = 1e-7  # relative to the segment length


def _solve_piecewise(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """Smallest s >= 0 with F(s) = sum_i a_i min(b_i, s c_i) >= need, per row (a, b, c >= 0);
    the last breakpoint where even F there stays below `need`. F is piecewise linear with
    breakpoints b_i / c_i: sorted, F at each breakpoint is a cumulative sum, and s is found
    exactly on the first segment that reaches `need`."""
    tiny = torch.finfo(a.dtype).tiny
    moving = c > 0
    breaks = torch.where(moving, b / c.clamp_min(tiny), torch.full_like(b, float("inf")))
    order = breaks.argsort(dim=1)
    breaks = breaks.gather(1, order)
    ab = torch.where(moving, a * b, torch.zeros_like(a)).gather(1, order)
    ac = torch.where(moving, a * c, torch.zeros_like(a)).gather(1, order)
    before = ab.cumsum(1) - ab  # sum over the segments already capped at b_i
    slope = ac.flip(1).cumsum(1).flip(1)  # sum of a_i c_i over those not capped yet (i >= k)
    finite = torch.isfinite(breaks)
    at_break = torch.where(finite, before + breaks * slope, torch.full_like(before, float("inf")))
    reached = (at_break >= need.unsqueeze(1)) & finite
    k = torch.where(reached.any(1), reached.to(torch.int8).argmax(1), torch.full_like(need, -1, dtype=torch.long))
    last = torch.where(finite, breaks, torch.zeros_like(breaks)).amax(1)  # unreachable: as far as the box goes
    kk = k.clamp_min(0).unsqueeze(1)
    s = (need - before.gather(1, kk).squeeze(1)) / slope.gather(1, kk).squeeze(1).clamp_min(tiny)
    low = torch.where(k > 0, breaks.gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1), torch.zeros_like(s))
    s = torch.minimum(torch.maximum(s, low), torch.where(k >= 0, breaks.gather(1, kk).squeeze(1), last))
    return torch.where(k >= 0, s, last).clamp_min(0)


def min_norm_step(a: torch.Tensor, delta: torch.Tensor, room_up: torch.Tensor, room_down: torch.Tensor,
                  norm: str) -> torch.Tensor:
    """The step y of smallest p-norm with a.y = delta and -room_down <= y <= room_up (rows of a).

    L-inf: y_i = s_i min(t, room_i) with s = sign(delta a), t the smallest level reaching delta.
    L2: y = clip(lambda a), lambda the smallest reaching delta (KKT of the box-constrained problem).
    Both levels solved exactly on the sorted breakpoints (`_solve_piecewise`).
    L1: fractional knapsack: spend on the coordinates of largest |a_i| first.
    Where the box cannot reach delta, the step goes as far as it can.
    """
    sign = torch.sign(delta).unsqueeze(1) * torch.sign(a)
    room = torch.where(sign > 0, room_up, room_down).clamp_min(0)
    weight = a.abs()
    need = delta.abs()
    if norm == "inf":
        t = _solve_piecewise(weight, room, torch.ones_like(weight), need)
        return sign * torch.minimum(room, t.unsqueeze(1))
    if norm == "2":
        lam = _solve_piecewise(weight, room, weight, need)
        return sign * torch.minimum(room, lam.unsqueeze(1) * weight)
    order = weight.argsort(dim=1, descending=True)
    w_sorted, r_sorted = weight.gather(1, order), room.gather(1, order)
    gain = w_sorted * r_sorted
    before = gain.cumsum(1) - gain  # what the coordinates before each one already give
    left = (need.unsqueeze(1) - before).clamp_min(0)
    take = torch.minimum(r_sorted, left / w_sorted.clamp_min(torch.finfo(a.dtype).tiny)).masked_fill(w_sorted == 0, 0.0)
    step = torch.zeros_like(a).scatter(1, order, take)
    return sign * step


def segment_boundary(prop: BoundProperty, region: Region, x_bad: torch.Tensor, evaluator: Evaluator) -> torch.Tensor:
    """The violating point closest to x0 found on the segments x0 -> x_bad (rows), by grid
    bisection on t in [0, 1] (x_bad itself violates); every evaluation reaches the observers."""
    x0 = region.x0
    lo = torch.zeros(x_bad.shape[0], 1, dtype=x0.dtype, device=x0.device)
    hi = torch.ones_like(lo)
    grid = torch.linspace(0, 1, SEGMENT_POINTS + 2, dtype=x0.dtype, device=x0.device)[1:-1]
    while bool(((hi - lo) > SEGMENT_TOLERANCE).any()) and not evaluator.total_exhausted:
        t = lo + (hi - lo) * grid  # (B, k)
        pts = x0 + t.unsqueeze(2) * (x_bad - x0).unsqueeze(1)
        w = evaluator(pts.reshape(-1, x0.numel())).reshape(t.shape)
        bad = w <= prop.threshold
        k = t.shape[1]
        first = torch.where(bad.any(1), bad.to(torch.int8).argmax(1), torch.full_like(bad[:, 0], k, dtype=torch.long))
        first = first.unsqueeze(1)  # index of the first violating grid point (k: none)
        hi = torch.where(first < k, t.gather(1, first.clamp_max(k - 1)), hi)
        lo = torch.where(first > 0, t.gather(1, (first - 1).clamp(0, k - 1)), lo)
    return x0 + hi * (x_bad - x0)


def _terms(prop: BoundProperty, evaluator: Evaluator, x: torch.Tensor, max_terms: int):
    """(values (K,), gradients (K, n)) of the K smallest terms g_j - c at the single point x
    (the whole w - c when the property has no exact min-of-terms spec; `term_gradients`)."""
    spec = prop.spec()
    terms = None
    if spec is not None and spec.exact and spec.A.shape[0] > 1:
        with torch.no_grad():
            z = evaluator.model.forward_flat(x.unsqueeze(0)).to(x.dtype)
        terms = spec.closest_terms(z[0], max_terms)
    rows = x.unsqueeze(0).expand(1 if terms is None else terms.numel(), -1).contiguous()
    # (one term, or no exact spec: w - c itself, as the evaluator computes w)
    values, grad, _ = term_gradients(prop, None if terms is None else spec, evaluator, rows, terms)
    return values.detach(), torch.zeros_like(rows) if grad is None else torch.nan_to_num(grad.detach())


def project_to_boundary(prop: BoundProperty, region: Region, x_bad: torch.Tensor, evaluator: Evaluator,
                        iterations: int = 20, max_terms: int = 9) -> None:
    """Boundary-projection steps from the violation x_bad (n,); every candidate is evaluated,
    so the closest violation lands in the caller's ViolationTracker. Needs gradients
    (RuntimeError otherwise, like the other gradient-guided searches)."""
    x0, unit = region.x0, region.unit
    scale = unit if unit is not None else torch.ones_like(x0)
    room_up, room_down = (region.upper - x0) / scale, (x0 - region.lower) / scale
    x_b = segment_boundary(prop, region, x_bad.unsqueeze(0), evaluator)[0]
    best = float(region.distance(x_b.unsqueeze(0))[0])
    for _ in range(iterations):
        if evaluator.total_exhausted:
            break
        g, a = _terms(prop, evaluator, x_b, max_terms)
        a_scaled = a * scale
        delta = (a * (x_b - x0)).sum(1) - g  # hyperplane a.(x - x0) = delta
        valid = torch.isfinite(delta) & (delta < 0) & (a.abs().sum(1) > 0)
        if not bool(valid.any()):
            break
        p = x0 + scale * min_norm_step(a_scaled[valid], delta[valid], room_up.expand(int(valid.sum()), -1),
                                       room_down.expand(int(valid.sum()), -1), region.norm)
        eta = torch.tensor(OVERSHOOTS, dtype=x0.dtype, device=x0.device).view(1, -1, 1)
        over = x0 + (1 + eta) * (p - x0).unsqueeze(1)
        beta = torch.tensor(BLENDS, dtype=x0.dtype, device=x0.device).view(1, -1, 1)
        blend = x_b + beta * (p.unsqueeze(1) - x_b)
        cands = torch.cat([over, blend], 1).reshape(-1, x0.numel())
        cands = torch.minimum(torch.maximum(cands, region.lower), region.upper)
        w = evaluator(cands)
        d = region.distance(cands)
        d = torch.where(w <= prop.threshold, d, torch.full_like(d, float("inf")))
        i = int(d.argmin())
        if not float(d[i]) < best * (1 - 1e-9):
            break
        x_b = segment_boundary(prop, region, cands[i].unsqueeze(0), evaluator)[0]
        new = float(region.distance(x_b.unsqueeze(0))[0])
        improved = best - new
        best = min(best, new)
        if improved <= 1e-7 * best:
            break
