"""Norm balls ∩ domain box: parse, distance (with per-feature units), projection."""

from __future__ import annotations

import math

import pytest
import torch

from saferisk.errors import ConfigError
from saferisk.norms import _project_l1, ball_box, distance, parse_norm, project


@pytest.mark.parametrize("value, name", [("inf", "inf"), ("Linf", "inf"), (math.inf, "inf"), ("l2", "2"), (2, "2"),
                                         ("2.0", "2"), ("L1", "1"), (1, "1")])
def test_parse_norm_aliases(value, name):
    assert parse_norm(value) == name


@pytest.mark.parametrize("value", ["3", "l0", "max", ""])
def test_parse_norm_unknown_is_a_clear_error(value):
    with pytest.raises(ConfigError, match="unknown norm"):
        parse_norm(value)


def test_distance_with_unit_scaling():
    x0 = torch.tensor([0.0, 100.0], dtype=torch.float64)
    x = torch.tensor([[0.5, 100.0], [0.0, 1100.0], [0.2, 600.0]], dtype=torch.float64)
    unit = torch.tensor([1.0, 1e4], dtype=torch.float64)
    assert torch.allclose(distance(x, x0, "inf"), torch.tensor([0.5, 1000.0, 500.0], dtype=torch.float64))
    assert torch.allclose(distance(x, x0, "inf", unit), torch.tensor([0.5, 0.1, 0.2], dtype=torch.float64))
    assert torch.allclose(distance(x, x0, "1", unit), torch.tensor([0.5, 0.1, 0.25], dtype=torch.float64))
    assert torch.allclose(distance(x, x0, "2", unit), torch.tensor([0.5, 0.1, math.hypot(0.2, 0.05)], dtype=torch.float64))


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
@pytest.mark.parametrize("scaled", [False, True])
def test_project_lands_in_ball_and_box(norm, scaled):
    gen = torch.Generator().manual_seed(3)
    n = 6
    lower = torch.tensor([0.0, -1.0, 100.0, 0.0, -5.0, 0.0], dtype=torch.float64)
    upper = torch.tensor([1.0, 1.0, 1000.0, 10.0, 5.0, 1.0], dtype=torch.float64)
    unit = (upper - lower) if scaled else None
    x0 = lower + (upper - lower) * torch.rand(n, generator=gen, dtype=torch.float64)
    x0[0] = 0.0  # a centre on the boundary of the box
    radius = 0.3 if scaled else 0.7
    spread = (upper - lower) if scaled else torch.ones(n, dtype=torch.float64)
    x = x0 + 3 * spread * torch.randn(2000, n, generator=gen, dtype=torch.float64)
    x = torch.cat([x, x0 + 0.01 * spread * torch.randn(50, n, generator=gen, dtype=torch.float64)])
    p = project(x, x0, radius, norm, lower, upper, unit)
    assert bool((p >= lower).all()) and bool((p <= upper).all())
    assert float(distance(p, x0, norm, unit).max()) <= radius * (1 + 1e-9)
    inside = (distance(x, x0, norm, unit) <= radius) & (x >= lower).all(1) & (x <= upper).all(1)
    assert bool(inside.any())
    assert torch.allclose(p[inside], x[inside])  # points already inside do not move
    lo, hi = ball_box(x0, radius, norm, lower, upper, unit)
    assert bool((p >= lo - 1e-12).all()) and bool((p <= hi + 1e-12).all())


def test_l1_projection_is_the_euclidean_projection():
    """Optimality of p = P(v) onto the L1 ball: (v - p) . (q - p) <= 0 for every q in the ball;
    the expression is linear in q, so checking the 2n vertices ±r e_i is exact."""
    gen = torch.Generator().manual_seed(5)
    for n, radius in ((1, 0.5), (3, 1.0), (8, 0.3), (20, 2.0)):
        v = torch.randn(200, n, generator=gen, dtype=torch.float64) * 2
        p = _project_l1(v, radius)
        assert bool((p.abs().sum(1) <= radius * (1 + 1e-9)).all())
        vertices = torch.cat([torch.eye(n, dtype=torch.float64), -torch.eye(n, dtype=torch.float64)]) * radius
        gap = ((v - p).unsqueeze(1) * (vertices.unsqueeze(0) - p.unsqueeze(1))).sum(-1)
        assert float(gap.max()) <= 1e-9, (n, float(gap.max()))
        outside = v.abs().sum(1) > radius
        assert torch.allclose(p[outside].abs().sum(1), torch.full((int(outside.sum()),), radius, dtype=torch.float64))
        assert torch.allclose(p[~outside], v[~outside])
    # a hand-checked case: v = (3, 1, 0), r = 2 -> theta = 1 -> (2, 0, 0)
    assert torch.allclose(_project_l1(torch.tensor([[3.0, 1.0, 0.0]]), 2.0), torch.tensor([[2.0, 0.0, 0.0]]))
    assert torch.allclose(_project_l1(torch.tensor([[-1.5, 1.5, 0.0]]), 1.0), torch.tensor([[-0.5, 0.5, 0.0]]))


def test_l1_projection_matches_scipy_on_small_problems():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    gen = torch.Generator().manual_seed(6)
    for _ in range(5):
        v = torch.randn(4, generator=gen, dtype=torch.float64) * 2
        radius = 0.8
        res = scipy_optimize.minimize(lambda q: ((q - v.numpy()) ** 2).sum(), x0=[0.0] * 4, method="SLSQP",
                                      constraints=[{"type": "ineq", "fun": lambda q: radius - abs(q).sum()}],
                                      options={"ftol": 1e-12, "maxiter": 500})
        p = _project_l1(v.unsqueeze(0), radius)[0]
        assert torch.allclose(p, torch.tensor(res.x), atol=1e-4), (p, res.x)
