"""Generalised Pattern Search (the paper's derivative-free local search), batched.

At x with mesh size s, poll the 2k points x ± s·h_i·e_i (h_i = the region's half-width of
feature i, so the mesh is scaled per feature; k = n in mode "gps", a random subspace of
`poll_coordinates` coordinates in mode "fast"), projected into B_p(x0, r) ∩ box. All poll
points of ALL starts go through the model in one batched forward pass (chunked to
`chunk_size`). If the best poll point improves, move there and s *= expansion, else
s *= contraction; a start stops when s < mesh_tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from saferisk.search.config import SearchConfig
from saferisk.search.region import Evaluator, Region


@dataclass
class PatternSearchResult:
    x: torch.Tensor  # (S, n) final points
    value: torch.Tensor  # (S,) objective at x
    iterations: int


def poll_points(x: torch.Tensor, mesh: torch.Tensor, half_width: torch.Tensor, coords: torch.Tensor,
                lower: torch.Tensor | None = None, upper: torch.Tensor | None = None) -> torch.Tensor:
    """The 2k poll points of each row of x (A, n): x ± mesh·h_c·e_c for c in coords -> (A, 2k, n).
    With `lower`/`upper` (a box), each moved coordinate is clipped to it: for a box region
    (L-inf ball ∩ domain) that IS the projection, so no full-size projection pass is needed."""
    A, n = x.shape
    k = coords.numel()
    steps = mesh.unsqueeze(1) * half_width[coords].unsqueeze(0)  # (A, k)
    base = x[:, coords]
    plus, minus = base + steps, base - steps
    if lower is not None:
        lo, hi = lower[coords], upper[coords]
        plus, minus = torch.minimum(plus, hi), torch.maximum(minus, lo)
    polls = x.unsqueeze(1).expand(A, 2 * k, n).clone()
    rows = torch.arange(k, device=x.device)
    polls[:, rows, coords] = plus
    polls[:, rows + k, coords] = minus
    return polls


def pattern_search(objective: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor, region: Region,
                   config: SearchConfig, evaluator: Evaluator, generator: torch.Generator,
                   start_values: torch.Tensor | None = None,
                   stop: Callable[[], bool] | None = None,
                   weights: torch.Tensor | None = None) -> PatternSearchResult:
    """Minimise `objective` (points (B, n) -> values (B,)) from every start at once; `stop()`
    ends the search early (e.g. once a violation is found). `weights` (S,) multiplies the
    objective per start, so e.g. +1/-1 rows minimise and maximise in the same batched passes."""
    x = region.project(starts.clone())
    fx = objective(x) if start_values is None else start_values.clone()
    if weights is not None:
        weights = weights.to(fx)
        fx = fx * weights
    fx = torch.nan_to_num(fx, nan=float("inf"))
    box = region.norm == "inf"
    expansion, contraction = config.factors(region.n)
    mesh = torch.full((x.shape[0],), float(config.initial_mesh), dtype=x.dtype, device=x.device)
    movable = (region.half_width > 0).nonzero().flatten()
    if movable.numel() == 0:
        return PatternSearchResult(x, fx, 0)
    subspace = config.mode == "fast" and config.poll_coordinates < movable.numel()
    iterations = 0
    for iterations in range(1, config.max_iterations + 1):
        active = (mesh >= config.mesh_tolerance).nonzero().flatten()
        if active.numel() == 0 or evaluator.exhausted or (stop is not None and stop()):
            break
        if subspace:
            pick = torch.randperm(movable.numel(), generator=generator)[: config.poll_coordinates]
            coords = movable[pick.to(movable.device)]
        else:
            coords = movable
        if box:  # per-coordinate clipping is the exact projection onto a box
            polls = poll_points(x[active], mesh[active], region.half_width, coords, region.box_lower, region.box_upper)
            A, P, n = polls.shape
            flat = polls.reshape(A * P, n)
        else:
            polls = poll_points(x[active], mesh[active], region.half_width, coords)
            A, P, n = polls.shape
            flat = region.project(polls.reshape(A * P, n))
        values = objective(flat).reshape(A, P)
        if weights is not None:
            values = values * weights[active].unsqueeze(1)
        values = torch.nan_to_num(values, nan=float("inf"))
        best_value, best_index = values.min(dim=1)
        improved = best_value < fx[active]
        moved = active[improved]
        x[moved] = flat.reshape(A, P, n)[improved.nonzero().flatten(), best_index[improved]]
        fx[moved] = best_value[improved]
        mesh[active] = torch.where(improved, (mesh[active] * expansion).clamp(max=max(1.0, config.initial_mesh)),
                                   mesh[active] * contraction)
    return PatternSearchResult(x, fx, iterations)
