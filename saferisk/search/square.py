"""Score-based witness search in the style of the Square attack (Andriushchenko et al., ECCV
2020: random search over square-shaped updates; the L1 variant follows Croce et al.'s AutoAttack
extension), for models that give no gradients.

Every restart keeps a perturbation d of the ball ||d||_p <= r (d = (x - x0) / unit, inside the
domain box) laid out as an image (B, H, W, C): the model's (C, H, W) input, or the flat vector
as the squarest H x W grid (padding cells are fixed at 0 by their box). Each iteration proposes,
per restart, a change inside one random s x s window (s from the paper's schedule of the
covered fraction p, rescaled to `iterations`) and keeps it if the loss drops:

- L-inf: the window is set to a vertex (+-r per channel); initial d = +-r vertical stripes.
- L2 / L1: the window gets a centred "bump" of opposite-signed halves (nested squares weighted
  1/(k+1)^2 for L2, 1/(k+1)^4 for L1) plus the window's old direction, and the mass of a second
  random window moves into it, so d stays on the sphere; initial d = a grid of such bumps.
  After the box clipping, d is stretched radially back onto the sphere where the box allows
  (`fill_sphere`), so pixels already at a bound do not waste the budget.

The loss of a restart is w - c (= min_j g_j for an exact min-of-terms spec, the margin loss);
with such a spec the later restarts run targeted on single terms g_j (the competing classes
closest at x0), like targeted Square. All restarts share one batched forward pass per
iteration; every point goes through the evaluator (its observers see every violation) and a
restart that reaches a violation stops.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch

from saferisk import norms
from saferisk.properties.base import BoundProperty
from saferisk.search.config import MAX_TARGETS
from saferisk.search.region import Evaluator, Region

# Fraction of the features the first squares cover, per norm (the paper tunes it per data set;
# AutoAttack's default is 0.8). 0.3 gave the smallest bisected radii of 0.1 / 0.3 / 0.8 on
# mnist-net_256x2 (L-inf and L2) and was as good as the others on the digits MLP.
P_INIT = {"inf": 0.3, "2": 0.3, "1": 0.3}
# iterations (of 10 000) after which p halves: the paper's schedule, rescaled to `iterations`
SCHEDULE_MARKS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
INIT_TILES = 5  # the L2/L1 initialisation tiles the image with about INIT_TILES x INIT_TILES bumps


@dataclass(frozen=True)
class SquareLayout:
    """How flat inputs (B, n) map to the grid (B, H, W, C) the squares move on."""

    channels: int
    height: int
    width: int
    n: int
    image: bool  # True: the model's own (C, H, W) layout; False: row-major H x W grid, zero-padded

    @staticmethod
    def of(input_shape: tuple[int, ...] | None, n: int) -> "SquareLayout":
        """The model's (C, H, W) (or (H, W)) layout where both H and W are >= 2, else the
        flat vector as the squarest grid: width ceil(sqrt(n)), as many rows as needed."""
        shape = tuple(int(s) for s in input_shape) if input_shape is not None else ()
        if len(shape) >= 2 and shape[-1] >= 2 and shape[-2] >= 2 and math.prod(shape) == n:
            return SquareLayout(math.prod(shape[:-2]), shape[-2], shape[-1], n, True)
        width = max(1, math.isqrt(max(n - 1, 0)) + 1) if n > 1 else 1
        return SquareLayout(1, -(-n // width), width, n, False)

    @property
    def features_per_channel(self) -> int:
        return self.n // self.channels

    def to_grid(self, flat: torch.Tensor) -> torch.Tensor:
        B = flat.shape[0]
        if self.image:
            return flat.reshape(B, self.channels, self.height, self.width).permute(0, 2, 3, 1)
        padded = torch.nn.functional.pad(flat, (0, self.height * self.width - self.n))
        return padded.reshape(B, self.height, self.width, 1)

    def to_flat(self, grid: torch.Tensor) -> torch.Tensor:
        B = grid.shape[0]
        if self.image:
            return grid.permute(0, 3, 1, 2).reshape(B, self.n)
        return grid.reshape(B, -1)[:, : self.n]


def schedule(iteration: int, iterations: int, p_init: float) -> float:
    """The paper's covered fraction p at `iteration`: p_init, halved at each of SCHEDULE_MARKS
    (iterations out of 10 000, rescaled to `iterations`)."""
    step = int(iteration / max(iterations, 1) * 10_000)
    return p_init / 2 ** sum(step > mark for mark in SCHEDULE_MARKS)


def square_side(p: float, layout: SquareLayout, smallest: int = 1) -> int:
    """Side of a square covering about p of each channel's features (at least `smallest`, odd
    for the bumps when smallest > 1), no larger than the grid."""
    side = max(int(round(math.sqrt(p * layout.features_per_channel))), smallest)
    if smallest > 1 and side % 2 == 0:
        side += 1
    return max(1, min(side, layout.height, layout.width))


def _half_bump(rows: int, cols: int, power: int, dtype) -> torch.Tensor:
    """Nested squares centred in a rows x cols block: cell weight sum_{k >= d} (k+1)^-power over
    the rings k the cell lies in (d = its Chebyshev distance from the centre)."""
    if rows == 0:
        return torch.zeros(0, cols, dtype=torch.float64).to(dtype)
    rings = max(rows // 2, cols // 2) + 1
    tail = torch.arange(1, rings + 1, dtype=torch.float64).pow(-power).flip(0).cumsum(0).flip(0)
    di = (torch.arange(rows) - rows // 2).abs().view(-1, 1)
    dj = (torch.arange(cols) - cols // 2).abs().view(1, -1)
    return tail[torch.maximum(di, dj)].to(dtype)


@functools.lru_cache(maxsize=64)
def bump(side: int, norm: str) -> torch.Tensor:
    """The side x side update pattern of the L2 (power 2) / L1 (power 4) Square attack: a
    positive bump over the top half, a negative one over the bottom half, unit p-norm (float64,
    cached: do not modify it)."""
    p = 1 if norm == "1" else 2
    power = 4 if norm == "1" else 2
    halves = []
    for sign, rows in ((1.0, side // 2), (-1.0, side - side // 2)):
        half = _half_bump(rows, side, power, torch.float64)
        if half.numel():
            half = sign * half / torch.linalg.vector_norm(half.reshape(-1), ord=p)
        halves.append(half)
    block = torch.cat(halves)
    return block / torch.linalg.vector_norm(block.reshape(-1), ord=p)


def _norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    """p-norms of the rows of d (B, ...) -> (B,)."""
    return norms.length(d.reshape(d.shape[0], -1), norm)


def fill_sphere(d: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, radius: float, norm: str) -> torch.Tensor:
    """clip(t d, lower, upper) (a box holding 0) with t chosen so that its p-norm (L2 or L1) is
    `radius`, or the box corner along d where the box is too small; L-inf: clip(d).
    The norm of clip(t d) is f(t) = sum_{clipped} b_i^p + t^p sum_{free} |d_i|^p, coordinate i
    clipped once t >= tau_i = b_i / |d_i| (b_i its bound in d's direction). With the taus
    sorted, f_k (the first k clipped) is >= f everywhere and equal to it on the k-th piece,
    so t = max_k of the roots of f_k(t) = radius^p: one sort, no iteration."""
    if norm == "inf":
        return torch.minimum(torch.maximum(d, lower), upper)
    p = 1 if norm == "1" else 2
    B = d.shape[0]
    flat = d.reshape(B, -1)
    bound = torch.where(flat > 0, upper.expand_as(d).reshape(B, -1), lower.expand_as(d).reshape(B, -1)).abs()
    magnitude = flat.abs()
    tau = torch.where(magnitude > 0, bound / magnitude.clamp_min(torch.finfo(d.dtype).tiny),
                      torch.full_like(bound, float("inf")))
    order = tau.argsort(dim=1)
    zero = torch.zeros(B, 1, dtype=d.dtype, device=d.device)
    clipped = torch.cat([zero, bound.gather(1, order).pow(p).cumsum(dim=1)], dim=1)  # k = 0..n clipped
    moving = magnitude.gather(1, order).pow(p)
    free = torch.cat([moving.flip(1).cumsum(dim=1).flip(1), zero], dim=1)  # k = 0..n clipped: the rest moves
    left = radius ** p - clipped
    roots = (left / free.clamp_min(torch.finfo(d.dtype).tiny)).clamp_min(0).pow(1 / p)
    roots = torch.where((free > 0) & (left >= 0), roots, torch.full_like(roots, -float("inf")))
    t = roots.amax(dim=1)
    t = torch.where(torch.isfinite(t), t, torch.ones_like(t)).view((B,) + (1,) * (d.dim() - 1))
    return torch.minimum(torch.maximum(d * t, lower), upper)


class _Ball:
    """The region in perturbation coordinates d = (x - x0) / unit on the grid layout."""

    def __init__(self, region: Region, layout: SquareLayout):
        self.region, self.layout = region, layout
        self.radius, self.norm = float(region.radius), region.norm
        self.unit = region.unit
        unit = 1 if region.unit is None else region.unit
        lower = layout.to_grid(((region.lower - region.x0) / unit).unsqueeze(0))[0]
        upper = layout.to_grid(((region.upper - region.x0) / unit).unsqueeze(0))[0]
        self.lower, self.upper = lower.clamp(max=0), upper.clamp(min=0)  # x0 lies in the box
        if self.norm == "inf":
            self.lower, self.upper = self.lower.clamp(min=-self.radius), self.upper.clamp(max=self.radius)

    def fit(self, d: torch.Tensor) -> torch.Tensor:
        """d moved into the box (and ball), stretched onto the sphere where it fits."""
        return fill_sphere(d, self.lower, self.upper, self.radius, self.norm)

    def points(self, d: torch.Tensor) -> torch.Tensor:
        """Flat input points of the perturbations d, with the region's projection as a last guard."""
        step = self.layout.to_flat(d)
        if self.unit is not None:
            step = step * self.unit
        return self.region.project(self.region.x0 + step)

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        step = x - self.region.x0
        if self.unit is not None:
            step = step / self.unit
        return self.layout.to_grid(step)


def _signs(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(like.device, like.dtype)


def _positions(count: int, side: int, layout: SquareLayout, generator: torch.Generator,
               device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (count, side) of one random side x side window per restart."""
    top = torch.randint(0, layout.height - side + 1, (count, 1), generator=generator)
    left = torch.randint(0, layout.width - side + 1, (count, 1), generator=generator)
    offsets = torch.arange(side).view(1, -1)
    return (top + offsets).to(device), (left + offsets).to(device)


def _window_mask(rows: torch.Tensor, cols: torch.Tensor, layout: SquareLayout) -> torch.Tensor:
    """(count, H, W, 1) boolean mask of the windows given by their row/column indices."""
    grid_rows = torch.arange(layout.height, device=rows.device).view(1, -1)
    grid_cols = torch.arange(layout.width, device=cols.device).view(1, -1)
    in_rows = (grid_rows >= rows[:, :1]) & (grid_rows <= rows[:, -1:])
    in_cols = (grid_cols >= cols[:, :1]) & (grid_cols <= cols[:, -1:])
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(3)


def _bumps(count: int, side: int, norm: str, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """count bumps (count, side, side, 1), each transposed with probability 1/2."""
    pattern = bump(side, norm).to(like.device, like.dtype)
    flip = (torch.rand(count, generator=generator) < 0.5).to(like.device).view(-1, 1, 1)
    return torch.where(flip, pattern.T.unsqueeze(0), pattern.unsqueeze(0)).unsqueeze(3)


def initial_perturbations(ball: _Ball, count: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's starting points: +-r vertical stripes (per column and channel) for L-inf; for
    L2/L1 a grid of bumps with random signs per tile and channel, scaled onto the sphere."""
    layout, like = ball.layout, ball.lower
    H, W, C = layout.height, layout.width, layout.channels
    if ball.norm == "inf":
        stripes = _signs((count, 1, W, C), generator, like) * ball.radius
        return ball.fit(stripes.expand(count, H, W, C))
    side = max(1, min(H, W) // INIT_TILES)
    d = torch.zeros(count, H, W, C, dtype=like.dtype, device=like.device)
    top0, left0 = (H - (H // side) * side) // 2, (W - (W // side) * side) // 2
    for top in range(top0, H - side + 1, side):
        for left in range(left0, W - side + 1, side):
            signs = _signs((count, 1, 1, C), generator, like)
            d[:, top:top + side, left:left + side, :] += _bumps(count, side, ball.norm, generator, like) * signs
    d = d * (ball.radius / _norm(d, ball.norm).clamp_min(1e-30)).view(-1, 1, 1, 1)
    return ball.fit(d)


def propose(ball: _Ball, d: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """One Square update of each row of d (B, H, W, C) inside a random window covering ~p."""
    layout = ball.layout
    B, C = d.shape[0], layout.channels
    batch = torch.arange(B, device=d.device).view(-1, 1, 1)
    if ball.norm == "inf":
        side = square_side(p, layout)
        rows, cols = _positions(B, side, layout, generator, d.device)
        index = (batch, rows.unsqueeze(2), cols.unsqueeze(1))
        lower, upper = ball.lower[index[1:]], ball.upper[index[1:]]  # (B, s, s, C)
        signs = _signs((B, 1, 1, C), generator, d)
        window = torch.minimum(torch.maximum(signs * ball.radius, lower), upper)
        unchanged = (window == d[index]).reshape(B, -1).all(dim=1).view(-1, 1, 1, 1)
        window = torch.where(unchanged, torch.minimum(torch.maximum(-signs * ball.radius, lower), upper), window)
        new = d.clone()
        new[index] = window
        return new
    side = square_side(p, layout, smallest=3)
    rows, cols = _positions(B, side, layout, generator, d.device)
    rows2, cols2 = _positions(B, side, layout, generator, d.device)
    index = (batch, rows.unsqueeze(2), cols.unsqueeze(1))
    freed = _window_mask(rows, cols, layout) | _window_mask(rows2, cols2, layout)
    rest = d * ~freed
    order = 1 if ball.norm == "1" else 2
    if ball.norm == "1":
        budget = (ball.radius - _norm(rest, "1")).clamp_min(0) / C
    else:
        budget = (ball.radius ** 2 - _norm(rest, "2") ** 2).clamp_min(0).sqrt() / math.sqrt(C)
    old = d[index]  # (B, s, s, C)
    old_norm = torch.linalg.vector_norm(old, ord=order, dim=(1, 2), keepdim=True)
    direction = _bumps(B, side, ball.norm, generator, d) * _signs((B, 1, 1, C), generator, d)
    direction = direction + old / old_norm.clamp_min(1e-12)
    direction = direction / torch.linalg.vector_norm(direction, ord=order, dim=(1, 2), keepdim=True).clamp_min(1e-30)
    new = rest.clone()
    new[index] = direction * budget.view(-1, 1, 1, 1)
    return ball.fit(new)


def _target_terms(prop: BoundProperty, restarts: int) -> tuple[Callable | None, int]:
    """(the spec's terms g_j(z) -> (B, J), J) when the property is an exact min of J > 1 terms."""
    spec = prop.spec()
    if restarts < 2 or spec is None or not spec.exact or spec.A.shape[0] < 2:
        return None, 0
    return spec.groups, int(spec.A.shape[0])


def square_search(prop: BoundProperty, region: Region, evaluator: Evaluator, generator: torch.Generator,
                  iterations: int, restarts: int = 1, stop: Callable[[], bool] | None = None,
                  starts: torch.Tensor | None = None, p_init: float | None = None) -> torch.Tensor:
    """Square-attack random search for a violation (w(f(x)) <= c) in `region`, minimising w - c.

    `restarts` searches run side by side, one batched forward pass per iteration (`iterations`
    at most, plus one for the starting points and x0). Restart 0 minimises w - c; with an exact
    min-of-terms spec the others each minimise one term g_j (cycling through the MAX_TARGETS
    terms smallest at x0). Rows of `starts` replace the random starting points of the first
    restarts. A restart stops at its first violation; all stop when `stop()` is true or the
    evaluator is exhausted. Returns the best point of each restart (restarts, n)."""
    restarts = max(int(restarts), 1)
    x0 = region.x0
    layout = SquareLayout.of(getattr(evaluator.model, "input_shape", None), region.n)
    ball = _Ball(region, layout)
    p_init = P_INIT[region.norm] if p_init is None else float(p_init)
    d = initial_perturbations(ball, restarts, generator)
    if starts is not None and starts.shape[0]:
        given = region.project(starts[:restarts].to(x0.device, x0.dtype))
        d[: given.shape[0]] = ball.perturbation(given)
    x = ball.points(d)
    d = ball.perturbation(x)
    if (stop is not None and stop()) or evaluator.exhausted:
        return x
    terms, n_terms = _target_terms(prop, restarts)
    target = torch.full((restarts,), -1, dtype=torch.long, device=x0.device)
    if terms is None:
        z, w = evaluator.outputs(x)
    else:  # x0 rides along in the first pass: its terms rank the targets
        z, w = evaluator.outputs(torch.cat([x0.unsqueeze(0), x]))
        closest = prop.spec().closest_terms(z[0], MAX_TARGETS)
        target[1:] = closest[torch.arange(restarts - 1, device=closest.device) % closest.numel()].to(x0.device)
        z, w = z[1:], w[1:]

    def losses(z: torch.Tensor, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        value = w - prop.threshold
        if terms is not None:
            chosen = target[rows]
            term = terms(z).gather(1, chosen.clamp_min(0).view(-1, 1)).squeeze(1)
            value = torch.where(chosen >= 0, term, value)
        return torch.nan_to_num(value, nan=float("inf"))

    every = torch.arange(restarts, device=x0.device)
    loss = losses(z, w, every)
    found = w <= prop.threshold
    for i in range(iterations):
        active = (~found).nonzero().flatten()
        if active.numel() == 0 or evaluator.exhausted or (stop is not None and stop()):
            break
        candidate = propose(ball, d[active], schedule(i, iterations, p_init), generator)
        x_new = ball.points(candidate)
        z, w = evaluator.outputs(x_new)
        new_loss = losses(z, w, active)
        violated = w <= prop.threshold
        better = (new_loss < loss[active]) | violated
        keep = active[better]
        x[keep], loss[keep] = x_new[better], new_loss[better]
        d[keep] = ball.perturbation(x_new[better])
        found[active] = violated
    return x
