"""The incomplete bound methods on spec rows: IBP, CROWN and alpha-CROWN.

alpha-CROWN: the lower line of an unstable ReLU may have any slope alpha in [0, 1] (relax.py),
so the bound is sound for every alpha; projected gradient ascent (Adam, then clipping to [0, 1])
on the sum of the row bounds tunes them (separately per spec row for the final pass, per
lower/upper half for the intermediate bounds, which are recomputed with their own alphas). The
best bound seen per row over the iterations is kept (each one is sound).
"""

from __future__ import annotations

import torch

from saferisk.bounds.engine import BoundEngine
from saferisk.bounds.sets import InputRegion
from saferisk.bounds.spec import SpecRows, ibp_rows_lower_bound, rows_lower_bound


def rows_bound(engine: BoundEngine, rows: SpecRows, inset: InputRegion, method: str, *,
               alpha_iterations: int = 20, alpha_lr: float = 0.25, splits: dict | None = None,
               budget=None, alpha_intermediate: bool = False) -> torch.Tensor:
    """Sound lower bounds (B, S) of the spec rows over each input set with `method`."""
    with torch.no_grad():
        ibp = engine.ibp(inset)
        ibp_rows = ibp_rows_lower_bound(engine, rows, ibp)
        if method == "ibp":
            return ibp_rows
        if method == "crown" or not engine.relu_nodes:
            bounds = engine.intermediate_bounds(inset, "crown", None, splits, ibp)
            return torch.maximum(rows_lower_bound(engine, inset, rows, bounds), ibp_rows)
    return torch.maximum(alpha_crown(engine, rows, inset, alpha_iterations, alpha_lr, splits, budget, ibp,
                                     alpha_intermediate), ibp_rows)


class Adam:
    """Adam ascent steps on a list of tensors (torch.optim imports torch._dynamo on first use,
    seconds of start-up an audit of one input cannot afford). Call step() after backward()."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        """One descent step on each parameter's .grad (then the grads are cleared)."""
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.sub_(self.lr * (m / c1) / ((v / c2).sqrt() + self.eps))
            p.grad = None


def maximise_bound(bound, alphas: dict, iterations: int, lr: float, budget=None,
                   done=None, best: torch.Tensor | None = None, on_bound=None) -> torch.Tensor:
    """Elementwise best of the lower bounds `bound()` over projected Adam steps on the ReLU
    slopes `alphas` (kept in [0, 1]; `bound()` creates them on its first call). Every iterate is
    sound, so the best one is. Stops after `iterations` bounds, when the budget is over, when nothing is
    optimised, or when done(best) holds; on_bound(bound, best so far) sees every bound."""
    optimiser = None
    for iteration in range(max(1, iterations)):
        with torch.enable_grad():
            lb = bound()
            if on_bound is not None:
                on_bound(lb.detach(), best)
            best = lb.detach() if best is None else torch.maximum(best, lb.detach())
            if (iteration >= iterations - 1 or not alphas or (done is not None and done(best))
                    or (budget is not None and budget.over())):
                break
            if optimiser is None:
                optimiser = Adam(list(alphas.values()), lr=lr)
            (-lb.sum()).backward()
            optimiser.step()
        with torch.no_grad():
            for value in alphas.values():
                value.clamp_(0.0, 1.0)
    return best


def alpha_crown(engine: BoundEngine, rows: SpecRows, inset: InputRegion, iterations: int, lr: float,
                splits: dict | None = None, budget=None, ibp: dict | None = None,
                intermediate: bool = False) -> torch.Tensor:
    """Row lower bounds (B, S) with optimised ReLU lower slopes.

    intermediate=False keeps the CROWN intermediate bounds fixed and optimises the slopes of the
    final pass only (cheap: S rows); True also optimises the slopes used for the intermediate
    bounds (tighter, much slower).
    """
    alphas: dict = {}
    ibp = engine.ibp(inset) if ibp is None else ibp
    fixed = None
    if not intermediate:
        with torch.no_grad():
            fixed = engine.intermediate_bounds(inset, "crown", None, splits, ibp)

    def bound() -> torch.Tensor:
        bounds = fixed if fixed is not None else engine.intermediate_bounds(inset, "crown", alphas, splits, ibp)
        return rows_lower_bound(engine, inset, rows, bounds, alphas)

    return maximise_bound(bound, alphas, iterations, lr, budget, done=lambda best: bool((rows.combine(best) > 0).all()))
