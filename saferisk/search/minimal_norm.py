"""Minimal-norm attack: the fast minimum-norm (FMN) loop of Pintor et al. (NeurIPS 2021),
written for saferisk's properties, norms (L-inf, L2, L1, per-feature `unit`) and domain box.

Each run (a start and one objective: the property's w - c, or one term g_t of
w - c = min_j g_j(f(x)), e.g. the margin to one competing class) keeps a ball radius eps_k and
alternates, for k = 0..K-1 with gamma_k, alpha_k cosine-annealed:

  eps_k = min(eps_{k-1}, ||d_best||) (1 - gamma_k)        if x_k violates (shrink the ball)
        = eps_{k-1} (1 + gamma_k)                          if a violation was seen before
        = ||x_k - x0|| + |l(x_k)| / ||grad l(x_k)||_q      else (the linearised boundary distance)
  x_{k+1} = proj_{B_p(x0, eps_k) ∩ box}(x_k - alpha_k eps_k dir_p(grad l(x_k)))

with dir_p the steepest-descent direction of the p-norm (`saferisk.search.gradient`) and q the
dual norm. Steps are relative to eps_k, so the loop is scale-free (inputs need not lie in [0, 1]).
All runs go through the model in one batch per step; every point is evaluated by the
`Evaluator`, so the closest violation reaches its observers (the witness `ViolationTracker`).
Gradients come from the model, or from finite differences (`Evaluator.gradient_estimate`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from saferisk import norms
from saferisk.properties.base import BoundProperty
from saferisk.search.gradient import steepest_direction
from saferisk.search.region import Evaluator, Region

GAMMA = (0.05, 0.001)  # initial and final relative change of the ball radius per step (the paper's)
# initial and final step relative to the ball radius, per norm (measured on the witness
# benchmark: whole-radius steps suit L-inf, whose projection only clips; L2/L1 do better with
# a quarter)
ALPHA = {"inf": (1.0, 0.01), "2": (0.25, 0.0025), "1": (0.25, 0.0025)}


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * k / max(steps, 1))) / 2


def dual_norm(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """||grad||_q per row, q the dual of the region's p-norm (L-inf <-> L1, L2 <-> L2)."""
    if norm == "inf":
        return grad.abs().sum(dim=1)
    if norm == "1":
        return grad.abs().amax(dim=1)
    return torch.linalg.vector_norm(grad, dim=1)


def proportional_direction(grad: torch.Tensor, unit: torch.Tensor | None) -> torch.Tensor:
    """The L2-normalised gradient times sqrt(n) (in the region's scaled coordinates): an L-inf
    step that moves each feature in proportion to its gradient (the sign step moves all alike);
    the projection onto the L-inf ball then saturates the features that matter most."""
    g = grad * unit if unit is not None else grad
    d = g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-30) * math.sqrt(g.shape[1])
    return d * unit if unit is not None else d


def minimal_norm_attack(prop: BoundProperty, region: Region, evaluator: Evaluator, starts: torch.Tensor,
                        targets: torch.Tensor | None, steps: int, stop: Callable[[], bool] | None = None,
                        proportional: torch.Tensor | None = None) -> None:
    """FMN runs from each start row (targets: the term g_t each row minimises, -1 for w - c
    itself; None: all rows on w - c); the closest violations land in the evaluator's observers.
    `proportional` (bool per row, L-inf only): that row steps along `proportional_direction`
    instead of the sign of the gradient (FMN's own L-inf step; neither is better everywhere)."""
    x0, norm = region.x0, region.norm
    scale = region.unit if region.unit is not None else torch.ones_like(x0)
    spec = prop.spec()
    if targets is None or spec is None or not spec.exact:
        targets = torch.full((starts.shape[0],), -1, dtype=torch.long)
    targets = targets.to(x0.device)
    if proportional is None:
        proportional = torch.zeros(starts.shape[0], dtype=torch.bool)
    proportional = proportional.to(x0.device)
    targeted = targets >= 0
    index = targets.clamp_min(0).view(-1, 1)

    def objective(x: torch.Tensor) -> torch.Tensor:
        z, w = evaluator.outputs_with_grad(x)
        plain = w - prop.threshold
        if not bool(targeted.any()):
            return plain
        return torch.where(targeted, spec.groups(z).gather(1, index).squeeze(1), plain)

    x = region.project(starts.to(x0))
    n_rows = x.shape[0]
    cap = torch.full((n_rows,), float(region.radius), dtype=x0.dtype, device=x0.device)
    eps = cap.clone()
    best = torch.full_like(eps, float("inf"))
    seen = torch.zeros(n_rows, dtype=torch.bool, device=x0.device)
    for k in range(steps):
        if evaluator.exhausted or (stop is not None and stop()):
            return
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = objective(x)
            finite = torch.isfinite(loss)
            if not bool(finite.any()):
                return
            (grad,) = torch.autograd.grad(loss[finite].sum(), x, allow_unused=True)
        if grad is None:
            return
        loss, grad, x = loss.detach(), torch.nan_to_num(grad.detach()), x.detach()
        distance = region.distance(x)
        violating = finite & (loss <= 0)
        best = torch.where(violating, torch.minimum(best, distance), best)
        seen |= violating
        gamma, alpha = _cosine(*GAMMA, k, steps), _cosine(*ALPHA[norm], k, steps)
        boundary = distance + loss.abs() / dual_norm(grad * scale, norm).clamp_min(1e-30)
        eps = torch.where(violating, torch.minimum(eps, best) * (1 - gamma), torch.where(seen, eps * (1 + gamma), boundary))
        eps = torch.nan_to_num(eps, nan=float(region.radius)).clamp(min=0).minimum(cap)
        direction = steepest_direction(grad, norm, region.unit)
        if norm == "inf" and bool(proportional.any()):
            direction[proportional] = proportional_direction(grad[proportional], region.unit)
        step = x - (alpha * eps).unsqueeze(1) * direction
        x = norms.project(step, x0, eps, norm, region.lower, region.upper, region.unit)
    evaluator(x)  # the last step's points
