"""Gradients of the property's terms (`term_gradients`: the minimal-norm attacks and the boundary
projection) and gradient-guided starts: projected steepest descent on a differentiable objective
(PGD-style; the graph runs in torch, so black-box forward passes also give gradients).
Each step moves along the steepest direction of the region's norm (sign for L-inf,
normalised gradient for L2, largest coordinates for L1) and projects back into the region."""

from __future__ import annotations

import math
from typing import Callable

import torch

from saferisk.properties.base import BoundProperty
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


def term_gradients(prop: BoundProperty, spec, evaluator: Evaluator, x: torch.Tensor, targets: torch.Tensor | None,
                   distance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """For the rows x and a term index per row (`targets`; -1 or None: w - c itself): (the
    objective l per row, the term g_t of its target; l's gradient in x, None where it has none
    (rows where l is not finite: zero, or NaN from the model's backward; callers take nan_to_num);
    where l is finite, None when it is finite on every row). One batch, counted and observed by
    the evaluator. With an exact spec, l's gradient in z is the coefficients of the active piece
    (`MinMaxSpec.active_terms`), so the backward pass runs through the model alone, seeded with
    them (the same gradient as a backward through the terms, without their autograd graph).
    Without one, l = w - c on every row. `spec`: prop.spec(), built once by the caller;
    `distance`: the rows' distances from x0, where the caller has them (for the observers)."""
    if not torch.is_grad_enabled():
        with torch.enable_grad():
            return term_gradients(prop, spec, evaluator, x, targets, distance)
    x = x.detach().requires_grad_(True)
    if spec is not None and spec.exact:
        z, _ = evaluator.outputs_for_gradient(x, distance)  # (w reaches the evaluator's observers)
        targets = (torch.full((x.shape[0],), -1, dtype=torch.long) if targets is None else targets).to(z.device)
        # (on rows at -1 the term is the smallest, i.e. w - c: the spec is exact; z detached:
        # no autograd graph for the terms)
        loss, coefficients = spec.active_terms(z.detach(), targets)
        finite = _finite_rows(loss)
        if finite is not None:
            if not bool(finite.any()):
                return loss, None, finite
            coefficients = torch.where(finite.unsqueeze(1), coefficients, torch.zeros_like(coefficients))
        (grad,) = torch.autograd.grad(z, x, grad_outputs=coefficients, allow_unused=True)
        return loss, grad, finite
    z, w = evaluator.outputs_with_grad(x)  # targets are -1 here (no exact spec)
    loss = w - prop.threshold
    finite = _finite_rows(loss.detach())
    if finite is not None and not bool(finite.any()):
        return loss.detach(), None, finite
    (grad,) = torch.autograd.grad(loss.sum() if finite is None else loss[finite].sum(), x, allow_unused=True)
    return loss.detach(), grad, finite


def _finite_rows(values: torch.Tensor) -> torch.Tensor | None:
    """None when every value is finite (their sum is: one reduction, the common case; a sum
    that overflows takes the exact way), else the finite mask."""
    if math.isfinite(float(values.sum())):
        return None
    return torch.isfinite(values)
