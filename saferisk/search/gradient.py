"""Gradient-guided starts: projected steepest descent on a differentiable objective
(PGD-style; the graph runs in torch, so black-box forward passes also give gradients).
Each step moves along the steepest direction of the region's norm (sign for L-inf,
normalised gradient for L2, largest coordinates for L1) and projects back into the region."""

from __future__ import annotations

from typing import Callable

import torch

from saferisk.search.region import Evaluator, Region


def steepest_direction(grad: torch.Tensor, norm: str, unit: torch.Tensor | None) -> torch.Tensor:
    """Unit-norm (in the region's scaled norm) direction of steepest ascent for gradient rows."""
    g = grad * unit if unit is not None else grad
    if norm == "inf":
        d = torch.sign(g)
    elif norm == "2":
        d = g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-30)
    else:
        q = max(1, g.shape[1] // 50)
        top = g.abs().topk(q, dim=1).indices
        d = torch.zeros_like(g)
        d.scatter_(1, top, torch.sign(g.gather(1, top)) / q)
    return d * unit if unit is not None else d


def gradient_descent(objective: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor, region: Region,
                     steps: int, evaluator: Evaluator, step_fraction: float | None = None,
                     stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise a differentiable objective (points -> values, differentiable through
    model.forward_flat_grad) from each start; returns the best point and value per start."""
    x = region.project(starts.clone())
    best_x, best_v = x.clone(), torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    step = (step_fraction or 2.5 / max(steps, 1)) * region.radius
    for i in range(steps + 1):
        if evaluator.exhausted or (stop is not None and stop()):
            break
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            values = objective(x)
            finite = torch.isfinite(values)
            grad = torch.autograd.grad(values[finite].sum(), x, allow_unused=True)[0] if bool(finite.any()) else None
        values = values.detach()
        better = torch.nan_to_num(values, nan=float("inf")) < best_v
        best_x[better], best_v[better] = x.detach()[better], values[better]
        if grad is None or i == steps:
            break
        grad = torch.nan_to_num(grad)
        x = region.project(x.detach() - step * steepest_direction(grad, region.norm, region.unit))
    return best_x, best_v
