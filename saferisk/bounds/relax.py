"""Linear relaxations of the nonlinear elementwise ops, given pre-activation bounds l <= x <= u.

Each returns lines (a_l, b_l, a_u, b_u) with a_l x + b_l <= f(x) <= a_u x + b_u on [l, u]:

- leaky_relu (slope `negative_slope`; relu is slope 0), stable neurons: exact. Unstable
  (l < 0 < u), for slope <= 1 f is convex: the chord through (l, f(l)), (u, f(u)) is above f,
  and any line through the origin with slope in [slope, 1] is below f (alpha-CROWN optimises
  that slope, alpha in [0, 1]; the CROWN default picks 1 when u > -l, else 0). For slope > 1 f
  is concave and the roles swap.
- tanh, sigmoid: take the chord slope k (f'(mid) for a degenerate interval) and the extremes of
  g(x) = f(x) - k x on [l, u]; f' is unimodal, so f'(x) = k has at most two roots, in closed
  form, and max/min g is attained at l, u or a root in [l, u]: the lines k x + min g and
  k x + max g bound f exactly-soundly for ANY k (a tiny margin covers float64 rounding).
- any L-Lipschitz f (the activations of `saferisk.models.activations`: ELU, GELU, Softplus,
  HardSwish, Clip/ReLU6, ...): the same parallel lines at the chord slope k, with the extremes of
  g = f - k x taken on a grid of n points of [l, u] (spacing h) and widened by (L + |k|) h / 2:
  every x in [l, u] lies within h / 2 of a grid point and g is (L + |k|)-Lipschitz, so
  min_grid g - (L + |k|) h / 2 <= g(x) <= max_grid g + (L + |k|) h / 2.
"""

from __future__ import annotations

import torch

_MARGIN = 1e-10


def default_alpha(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """CROWN's adaptive lower slope choice for unstable ReLUs: 1 if u > -l else 0."""
    return (upper > -lower).to(lower.dtype)


def leaky_relu_relax(lower, upper, negative_slope: float = 0.0, alpha=None):
    """Lines for f(x) = x (x >= 0), negative_slope * x (x < 0); alpha broadcastable to l."""
    a = float(negative_slope)
    one = torch.ones_like(lower)
    zero = torch.zeros_like(lower)
    active = lower >= 0
    inactive = upper <= 0
    width = (upper - lower).clamp_min(1e-30)
    chord_slope = (upper - a * lower) / width
    chord_bias = upper - chord_slope * upper
    if alpha is None:
        alpha = default_alpha(lower, upper)
    lo_end, hi_end = (a, 1.0) if a <= 1 else (1.0, a)
    free_slope = lo_end + alpha * (hi_end - lo_end)
    stable_slope = torch.where(active, one, a * one)
    if a <= 1:  # convex: chord above, lines through 0 below
        al = torch.where(active | inactive, stable_slope, free_slope + zero)
        bl = zero
        au = torch.where(active | inactive, stable_slope, chord_slope)
        bu = torch.where(active | inactive, zero, chord_bias)
    else:  # concave
        al = torch.where(active | inactive, stable_slope, chord_slope)
        bl = torch.where(active | inactive, zero, chord_bias)
        au = torch.where(active | inactive, stable_slope, free_slope + zero)
        bu = zero
    return al, bl, au, bu


def _tanh_roots(k):
    r = torch.atanh(torch.sqrt((1 - k).clamp(0.0, 1.0 - 1e-16)))
    return r, -r


def _sigmoid_roots(k):
    disc = torch.sqrt((1 - 4 * k).clamp(0.0, 1.0))
    s_hi = ((1 + disc) / 2).clamp(1e-300, 1 - 1e-16)
    s_lo = ((1 - disc) / 2).clamp(1e-300, 1 - 1e-16)
    return torch.log(s_hi / (1 - s_hi)), torch.log(s_lo / (1 - s_lo))


def s_shaped_relax(op: str, lower, upper):
    """Parallel lines (slope = chord slope) bounding tanh or sigmoid on [l, u]."""
    fn = torch.tanh if op == "tanh" else torch.sigmoid
    roots = _tanh_roots if op == "tanh" else _sigmoid_roots
    fl, fu = fn(lower), fn(upper)
    width = upper - lower
    mid = (lower + upper) / 2
    deriv_mid = 1 - torch.tanh(mid) ** 2 if op == "tanh" else torch.sigmoid(mid) * (1 - torch.sigmoid(mid))
    k = torch.where(width > 1e-9, (fu - fl) / width.clamp_min(1e-30), deriv_mid)
    candidates = [lower, upper]
    for root in roots(k):
        candidates.append(torch.minimum(torch.maximum(root, lower), upper))
    g = torch.stack([fn(c) - k * c for c in candidates])
    g_max = g.amax(dim=0) + _MARGIN
    g_min = g.amin(dim=0) - _MARGIN
    return k, g_min, k, g_max


GRID_POINTS = 65  # grid of the Lipschitz relaxation: the lines are within ~ (L + |k|) (u - l) / 64 of f


def lipschitz_grid_values(fn, lipschitz: float, lower, upper, slope=None, points: int = GRID_POINTS):
    """(min g, max g) over [l, u] of g(x) = f(x) - slope x, soundly (grid extremes widened by the
    Lipschitz constant of g times half the grid spacing)."""
    slope = torch.zeros_like(lower) if slope is None else slope
    t = torch.linspace(0.0, 1.0, points, dtype=lower.dtype, device=lower.device).reshape((points,) + (1,) * lower.dim())
    grid = lower + t * (upper - lower)  # (points, *shape)
    g = fn(grid) - slope * grid
    margin = (lipschitz + slope.abs()) * (upper - lower) / (2 * (points - 1))
    pad = _MARGIN * (1 + g.abs().amax(dim=0))  # float64 rounding of f, k x and the grid
    return g.amin(dim=0) - margin - pad, g.amax(dim=0) + margin + pad


def lipschitz_grid_relax(fn, lipschitz: float, lower, upper):
    """Parallel lines (slope = chord slope) bounding an L-Lipschitz elementwise f on [l, u]."""
    width = upper - lower
    k = torch.where(width > 1e-12, (fn(upper) - fn(lower)) / width.clamp_min(1e-30), torch.zeros_like(width))
    g_min, g_max = lipschitz_grid_values(fn, lipschitz, lower, upper, k)
    return k, g_min, k, g_max
