"""Exact L-inf maximum safe radius of a small ReLU MLP by mixed-integer linear programming.

For the decision j at x0 and each other class t:
    minimise eps  s.t.  |x - x0|_inf <= eps,  x in [0, 1]^n (the domain),  z_t(x) - z_j(x) >= 0,
with every ReLU h = max(a, 0) encoded exactly (big-M with interval bounds l < 0 < u over the
max-radius box, binary d: h >= a, h >= 0, h <= u d, h <= a - l (1 - d)). The exact radius is
the minimum over t (ties count as violations, like `Robustness`); infeasible for every t means
r* >= max_radius. Solved with scipy's HiGHS (`scipy.optimize.milp`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class ExactRadius:
    radius: float | None  # None: no violation within max_radius (r* >= max_radius)
    x: np.ndarray | None  # the minimiser (a point on the decision boundary)
    target: int | None
    seconds: float
    unstable_relus: int


def _interval(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Wp, Wn = np.clip(W, 0, None), np.clip(W, None, 0)
    return Wp @ lo + Wn @ hi + b, Wp @ hi + Wn @ lo + b


def exact_linf_radius(weights: list[np.ndarray], biases: list[np.ndarray], x0: np.ndarray, decision: int,
                      max_radius: float, lower: float = 0.0, upper: float = 1.0,
                      time_limit: float = 60.0) -> ExactRadius:
    """weights[l] has the torch layout (out, in); ReLU after every layer but the last."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    start = time.perf_counter()
    n = x0.size
    box_lo = np.maximum(lower, x0 - max_radius)
    box_hi = np.minimum(upper, x0 + max_radius)
    # variable layout: [x (n), eps, then per hidden layer: h (k), d (k)]
    n_vars = n + 1
    lo_bounds = list(box_lo) + [0.0]
    hi_bounds = list(box_hi) + [max_radius]
    integrality = [0] * (n + 1)
    rows: list[tuple[dict[int, float], float, float]] = []  # (coefficients, lb, ub)
    for i in range(n):  # x_i - eps <= x0_i and x_i + eps >= x0_i
        rows.append(({i: 1.0, n: -1.0}, -np.inf, x0[i]))
        rows.append(({i: 1.0, n: 1.0}, x0[i], np.inf))
    # previous layer as affine expressions over variables: expr_k = sum coef * var + const
    prev_index = np.arange(n)
    prev_lo, prev_hi = box_lo, box_hi
    unstable = 0
    for W, b in zip(weights[:-1], biases[:-1]):
        a_lo, a_hi = _interval(W, b, prev_lo, prev_hi)
        k = W.shape[0]
        h_index = np.arange(n_vars, n_vars + k)
        d_index = np.arange(n_vars + k, n_vars + 2 * k)
        n_vars += 2 * k
        lo_bounds += [0.0] * k + [0.0] * k
        hi_bounds += list(np.maximum(a_hi, 0.0)) + [1.0] * k
        integrality += [0] * k + [1] * k
        for r in range(k):
            a = {int(prev_index[c]): float(W[r, c]) for c in range(W.shape[1]) if W[r, c] != 0}
            h, d = int(h_index[r]), int(d_index[r])
            if a_lo[r] >= 0:  # active: h = a
                rows.append(({**{v: -c for v, c in a.items()}, h: 1.0}, b[r], b[r]))
                hi_bounds[d] = 0.0
            elif a_hi[r] <= 0:  # inactive: h = 0
                hi_bounds[h] = 0.0
                hi_bounds[d] = 0.0
            else:
                unstable += 1
                rows.append(({**{v: -c for v, c in a.items()}, h: 1.0}, b[r], np.inf))  # h >= a
                rows.append(({h: 1.0, d: -a_hi[r]}, -np.inf, 0.0))  # h <= u d
                # h <= a - l (1 - d)  <=>  h - a - l d <= b - l
                rows.append(({**{v: -c for v, c in a.items()}, h: 1.0, d: -a_lo[r]}, -np.inf, b[r] - a_lo[r]))
        prev_index, prev_lo, prev_hi = h_index, np.maximum(a_lo, 0.0), np.maximum(a_hi, 0.0)
    W_out, b_out = weights[-1], biases[-1]
    A = np.zeros((len(rows) + 1, n_vars))
    row_lb, row_ub = np.empty(len(rows) + 1), np.empty(len(rows) + 1)
    for i, (coef, lb, ub) in enumerate(rows):
        for v, c in coef.items():
            A[i, v] += c
        row_lb[i], row_ub[i] = lb, ub
    c = np.zeros(n_vars)
    c[n] = 1.0
    best: ExactRadius = ExactRadius(None, None, None, 0.0, unstable)
    for t in range(W_out.shape[0]):
        if t == decision:
            continue
        A[-1] = 0.0
        A[-1, prev_index] = W_out[t] - W_out[decision]
        row_lb[-1], row_ub[-1] = b_out[decision] - b_out[t], np.inf  # z_t - z_j >= 0
        hi = np.array(hi_bounds, dtype=float)
        if best.radius is not None:
            hi[n] = best.radius  # only a closer boundary can improve
        res = milp(c, constraints=LinearConstraint(A, row_lb, row_ub), integrality=np.array(integrality),
                   bounds=Bounds(np.array(lo_bounds, dtype=float), hi),
                   options={"time_limit": time_limit, "mip_rel_gap": 1e-9, "presolve": True})
        if res.status == 0 and res.x is not None:
            best = ExactRadius(float(res.x[n]), res.x[:n].copy(), t, 0.0, unstable)
        elif res.status not in (2,):  # 2 = infeasible; anything else means not solved to optimality
            raise RuntimeError(f"MILP for target {t} not solved: status {res.status} ({res.message})")
    best.seconds = time.perf_counter() - start
    return best
