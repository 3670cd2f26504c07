"""The paper's Lipschitz metric, estimated by search.

L(x0, d) = max_{x in B, x != x0} |w(x) - w(x0)| / ||x - x0||_p. The search maximises this
ratio (equivalently minimises the paper's phi = ||x - x0|| / |w(x) - w(x0)|) with random
sampling, pattern search and, in mode "fast", gradient-guided starts. Every evaluated point's
ratio is a valid LOWER bound on L, so L_hat <= L and r_hat = (w(x0) - c) / L_hat is an
ESTIMATE of the safe radius (it can exceed the true radius), never a guarantee.
"""

from __future__ import annotations

import torch

from saferisk.properties.base import BoundProperty
from saferisk.search.config import SearchConfig
from saferisk.search.gps import pattern_search
from saferisk.search.gradient import gradient_descent
from saferisk.search.region import Evaluator, Region


# share of SearchConfig.budget (also for a model without gradients: the estimate does not depend on the
# runtime), or of a smaller black_box_budget
LIPSCHITZ_BUDGET = 0.3


class RatioTracker:
    """Observer keeping max |w(x) - w0| / ||x - x0|| over everything evaluated while attached."""

    def __init__(self, prop: BoundProperty, region: Region, w0: float):
        self.prop, self.region, self.w0 = prop, region, float(w0)
        self.best = 0.0

    def ratios(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        d = self.region.distance(x)
        change = (w - self.w0).abs()
        ok = (d > 1e-12 * max(self.region.radius, 1e-30)) & torch.isfinite(change)
        return torch.where(ok, change / d.clamp_min(1e-30), torch.zeros_like(d))

    def __call__(self, x: torch.Tensor, w: torch.Tensor) -> None:
        r = self.ratios(x, w)
        if r.numel():
            self.best = max(self.best, float(r.max()))


def lipschitz_search(prop: BoundProperty, region: Region, w0: float, evaluator: Evaluator,
                     config: SearchConfig, generator: torch.Generator) -> float:
    """L_hat: the largest ratio |w(x) - w0| / ||x - x0|| the search finds in the region."""
    tracker = RatioTracker(prop, region, w0)
    evaluator.observers.append(tracker)
    # (of `budget` on both paths: the same estimate with or without gradients; of a smaller
    # black_box_budget where one is set, which it would otherwise use up before the witness search)
    evaluator.new_phase(LIPSCHITZ_BUDGET, of=config.budget if evaluator.budget is None
                        else min(config.budget, evaluator.budget))
    try:
        def neg_ratio(x: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
            w = evaluator.with_grad(x) if differentiable else evaluator(x)
            d = region.distance(x).clamp_min(1e-12 * max(region.radius, 1e-30))
            return -(w - w0).abs() / d

        near = region.shrink(region.radius * 1e-2).sample(max(8, config.n_random // 8), generator)
        samples = torch.cat([near, region.sample(config.n_random, generator)])
        values = neg_ratio(samples)
        order = torch.nan_to_num(values, nan=float("inf")).argsort()
        starts = [samples[order[: config.n_starts]]]
        if config.gradient_starts and config.mode == "fast" and not evaluator.exhausted:
            try:
                gx, _ = gradient_descent(lambda x: neg_ratio(x, True), near[: config.n_starts], region,
                                         config.gradient_steps, evaluator, step_fraction=0.5 / max(config.gradient_steps, 1))
                starts.append(gx)
            except RuntimeError:
                pass
        pattern_search(neg_ratio, torch.cat(starts), region, config, evaluator, generator)
    finally:
        evaluator.observers.remove(tracker)
    return tracker.best
