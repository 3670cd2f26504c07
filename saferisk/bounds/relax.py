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
- convex f (the bounds-internal exp, reciprocal 1/y and rsqrt y^-1/2 on y > 0, square y^2; see
  decompose.py): above, the chord through (l, f(l)) and (u, f(u)), k = (f(u) - f(l)) / (u - l)
  in closed form (exp: e^l expm1(u - l) / (u - l); 1/y: -1 / (l u); y^-1/2:
  -1 / (sqrt(l) sqrt(u) (sqrt(l) + sqrt(u))); y^2: l + u), above f on [l, u] by convexity;
  below, the tangent at t with f'(t) = k (parallel to the chord: the narrowest band), below f
  everywhere by convexity, whatever t (t is clamped to [l, u]). Both are widened by _MARGIN
  relative to the magnitudes of the line on [l, u] (float64 rounding). A line float64 cannot
  hold (exp above u > EXP_LINE_MAX, an overflow) is given as slope 0 and intercept -inf (lower)
  or +inf (upper): no line; the engine's bound of a row that needs it is -inf.
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


EXP_LINE_MAX = 300.0  # exp above it: no upper line (its chord slope ~ e^300 / width would swamp any bound)


def _chord(op: str, lower, upper):
    """(k, b): the chord k y + b of convex f through (l, f(l)) and (u, f(u)), in closed form."""
    if op == "exp":  # e^l expm1(w) / w: no cancellation for narrow intervals (w = 0: e^l), (e^u - e^l) / w for wide ones
        width, small = upper - lower, (upper - lower).clamp(1e-300, 1.0)
        k = torch.where(width > 1, (torch.exp(upper) - torch.exp(lower)) / width.clamp_min(1.0),
                        torch.exp(lower) * torch.expm1(small) / small)
        return k, torch.exp(lower) - k * lower
    if op == "reciprocal":
        return -1 / (lower * upper), 1 / lower + 1 / upper
    if op == "rsqrt":
        sl, su = lower.sqrt(), upper.sqrt()
        return -1 / (sl * su * (sl + su)), 1 / sl + sl / (su * (sl + su))
    return lower + upper, -lower * upper  # square


def _tangent(op: str, k, lower, upper):
    """(a, b): the tangent a y + b of convex f at the t in [l, u] with f'(t) = k."""
    if op == "exp":
        t = torch.log(k)
    elif op == "reciprocal":
        t = (-1 / k).sqrt()
    elif op == "rsqrt":
        t = (-2 * k).pow(-2 / 3)
    else:
        t = k / 2
    t = torch.minimum(torch.maximum(t.nan_to_num(nan=0.0), lower), upper)
    if op == "exp":
        return torch.exp(t), torch.exp(t) * (1 - t)
    if op == "reciprocal":
        return -1 / (t * t), 2 / t
    if op == "rsqrt":
        return -0.5 * t.pow(-1.5), 1.5 * t.rsqrt()
    return 2 * t, -t * t


def _widen(a, b, lower, upper, sign: float):
    """b moved by _MARGIN x the line's magnitude on [l, u] (sign -1: down, +1: up); slope 0 and
    intercept sign x inf where the line is not finite."""
    magnitude = (b.abs() + (a * lower).abs() + (a * upper).abs()).nan_to_num(nan=0.0)  # 0 x inf: a = 0
    b = b + sign * _MARGIN * (1 + magnitude)
    missing = ~(torch.isfinite(a) & torch.isfinite(b))
    return torch.where(missing, torch.zeros_like(a), a), torch.where(missing, torch.full_like(b, sign * float("inf")), b)


def convex_relax(op: str, lower, upper):
    """Lines (a_l, b_l, a_u, b_u) of convex f (exp, reciprocal, rsqrt, square) on [l, u], l <= u
    (l > 0 for reciprocal and rsqrt): the tangent parallel to the chord below, the chord above."""
    lower, upper = lower.detach(), upper.detach()  # (alpha-CROWN's gradients do not flow through these lines)
    capped = upper.clamp(max=EXP_LINE_MAX) if op == "exp" else upper
    low = torch.minimum(lower, capped)
    k, b = _chord(op, low, capped)
    al, bl = _widen(*_tangent(op, k, low, capped), lower, upper, -1.0)
    au, bu = _widen(k, b, lower, upper, 1.0)
    if op == "exp":
        no_line = upper > EXP_LINE_MAX
        au, bu = torch.where(no_line, torch.zeros_like(au), au), torch.where(no_line, torch.full_like(bu, float("inf")), bu)
    return al, bl, au, bu


def convex_range(op: str, lower, upper):
    """(min, max) of convex f (exp, reciprocal, rsqrt, square) over [l, u]."""
    if op == "exp":
        return torch.exp(lower), torch.exp(upper)
    if op == "reciprocal":
        return 1 / upper, 1 / lower
    if op == "rsqrt":
        return upper.rsqrt(), lower.rsqrt()
    low, high = lower * lower, upper * upper
    straddle = (lower < 0) & (upper > 0)
    return torch.where(straddle, torch.zeros_like(low), torch.minimum(low, high)), torch.maximum(low, high)
