"""Boundary projection: the closed-form minimal-norm step, segment bisection, and witnesses
that reach the exact radius of linear classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

from conftest import build_mlp
from saferisk.data.domain import Domain
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search.boundary import min_norm_step, project_to_boundary, segment_boundary
from saferisk.search.region import Evaluator, Region
from saferisk.search.witness import WITNESS_MARGIN, ViolationTracker


def _optimum(a: np.ndarray, delta: float, up: np.ndarray, down: np.ndarray, norm: str) -> float:
    """min ||y||_p subject to a.y = delta, -down <= y <= up, by scipy (LP for inf/1, SLSQP for 2)."""
    n = a.size
    bounds = list(zip(-down, up))
    if norm == "inf":
        c = np.r_[np.zeros(n), 1.0]
        a_ub = np.r_[np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]]
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[a, 0.0][None], b_eq=[delta],
                      bounds=bounds + [(0, None)])
        return float(res.fun)
    if norm == "1":
        c = np.r_[np.zeros(n), np.ones(n)]
        a_ub = np.r_[np.c_[np.eye(n), -np.eye(n)], np.c_[-np.eye(n), -np.eye(n)]]
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[a, np.zeros(n)][None], b_eq=[delta],
                      bounds=bounds + [(0, None)] * n)
        return float(res.fun)
    res = minimize(lambda y: (y ** 2).sum(), np.zeros(n), jac=lambda y: 2 * y, method="SLSQP", bounds=bounds,
                   constraints=[{"type": "eq", "fun": lambda y: a @ y - delta, "jac": lambda y: a}],
                   options={"ftol": 1e-15, "maxiter": 500})
    return float(np.sqrt(res.fun))


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_min_norm_step_is_the_constrained_optimum(norm):
    gen = torch.Generator().manual_seed(3)
    checked = 0
    for _ in range(40):
        n = 7
        a = torch.randn(1, n, generator=gen, dtype=torch.float64)
        delta = -torch.rand(1, generator=gen, dtype=torch.float64) * 1.5
        up = torch.rand(1, n, generator=gen, dtype=torch.float64)
        down = torch.rand(1, n, generator=gen, dtype=torch.float64)
        y = min_norm_step(a, delta, up, down, norm)[0].numpy()
        A, d = a[0].numpy(), float(delta)
        reach = sum(abs(A[i]) * (up[0, i] if d * A[i] > 0 else down[0, i]) for i in range(n))
        assert (y <= up[0].numpy() + 1e-12).all() and (y >= -down[0].numpy() - 1e-12).all()
        if reach < abs(d):  # infeasible: every coordinate goes as far as the box allows
            assert A @ y == pytest.approx(-float(reach), rel=1e-9)
            continue
        assert A @ y == pytest.approx(d, abs=1e-9)
        got = float(np.linalg.norm(y, ord={"inf": np.inf, "2": 2, "1": 1}[norm]))
        assert got == pytest.approx(_optimum(A, d, up[0].numpy(), down[0].numpy(), norm), rel=1e-6, abs=1e-12)
        checked += 1
    assert checked >= 20


def _linear_classifier(seed=0, n=6, m=3):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, m, generator=gen, dtype=torch.float64)
    b = torch.randn(m, generator=gen, dtype=torch.float64) * 0.1
    return W, b, build_mlp([W], [b])


def _exact_linear_radius(W, b, x0, label, norm, margin=0.0):
    """min over j of (margin_j + margin) / ||W[:, label] - W[:, j]||_dual (no box in the way):
    the distance to the closest point where z_j >= z_label + margin."""
    dual = {"inf": 1, "2": 2, "1": np.inf}[norm]
    z = x0 @ W + b
    return min(float((z[label] - z[j] + margin) / np.linalg.norm(W[:, label] - W[:, j], ord=dual))
               for j in range(W.shape[1]) if j != label)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_projection_reaches_the_exact_radius_of_a_linear_classifier(norm):
    W, b, model = _linear_classifier()
    x0 = torch.zeros(6, dtype=torch.float32)
    z0 = model.forward_flat(x0[None])[0]
    label = int(z0.argmax())
    exact = _exact_linear_radius(W.numpy(), b.numpy(), np.zeros(6), label, norm)
    prop = Robustness().bind(z0.double(), label)
    lower, upper = torch.full((6,), -100.0), torch.full((6,), 100.0)
    region = Region(x0, 10 * exact, norm, lower, upper)
    evaluator = Evaluator(model, prop.value)
    tracker = ViolationTracker(prop, region)
    evaluator.observers.append(tracker)
    # a far violation: a large step against the label's score
    far = x0 - 5 * exact * torch.sign(torch.as_tensor(W[:, label] - W[:, (label + 1) % 3], dtype=torch.float32))
    assert float(prop.value(model.forward_flat(far[None]))[0]) <= 0
    project_to_boundary(prop, region, far, evaluator)
    assert tracker.best_distance == pytest.approx(exact, rel=1e-4)
    assert tracker.best_distance >= exact * (1 - 1e-5)  # float32 model: never meaningfully below


def test_segment_boundary_finds_the_crossing_of_a_linear_model():
    model = build_mlp([torch.tensor([[1.0], [0.0]])], [torch.tensor([0.0])])  # z = x_1

    class BelowThreshold:  # w = 0.3 - z: holds at x0 = 0, fails where x_1 >= 0.3
        threshold = 0.0

        @staticmethod
        def value(z):
            return 0.3 - z[:, 0]

    region = Region(torch.zeros(2), 1.0, "inf", torch.full((2,), -1.0), torch.ones(2))
    evaluator = Evaluator(model, BelowThreshold.value)
    point = segment_boundary(BelowThreshold, region, torch.tensor([[1.0, 0.5]]), evaluator)[0]
    assert float(point[0]) == pytest.approx(0.3, abs=1e-6)
    assert float(point[1]) == pytest.approx(0.15, abs=1e-6)
    assert float(BelowThreshold.value(model.forward_flat(point[None]))[0]) <= 0


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_bracket_of_a_linear_classifier_is_tight_and_sound(norm):
    W, b, model = _linear_classifier(seed=4)
    x0 = np.full(6, 0.5)
    z0 = model.forward_flat(torch.as_tensor(x0, dtype=torch.float32)[None])[0]
    label = int(z0.argmax())
    exact = _exact_linear_radius(W.numpy(), b.numpy(), x0, label, norm)
    domain = Domain.scalar(-100.0, 100.0, 6)
    res = compute_radius(model, x0, Robustness(), norm, 10 * exact, domain, label=label, seed=0)
    # witnesses must violate by the witness margin (WITNESS_MARGIN x the output scale at x0):
    # the tight witness is at the exact radius of that stricter violation
    margin = WITNESS_MARGIN * max(float(z0.max() - z0.min()), float(z0.abs().max()))
    assert res.extra["witness_margin"] >= res.extra["witness_margin_required"] == pytest.approx(margin, rel=1e-6)
    robust = _exact_linear_radius(W.numpy(), b.numpy(), x0, label, norm, margin)
    assert exact < robust * (1 - 1e-5) <= res.radius_upper  # (1e-5: the model computes in float32)
    assert res.radius_upper == pytest.approx(robust, rel=1e-4)
    assert res.radius_lower is not None and res.radius_lower <= exact * (1 + 1e-6)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("norm", ("inf", "2", "1"))
def test_min_norm_step_is_finite_with_zero_gradient_coordinates(norm, dtype):
    """Coordinates with a zero gradient take no step; a target the box cannot reach gives the
    farthest step the box allows (no NaN in float32, where 1e-300 rounds to 0)."""
    from saferisk.search.boundary import min_norm_step

    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]], dtype=dtype)
    room = torch.full((2, 3), 0.1, dtype=dtype)
    far = min_norm_step(a, torch.tensor([5.0, 0.0], dtype=dtype), room, room, norm)
    assert bool(torch.isfinite(far).all())
    assert torch.equal(far[1], torch.zeros(3, dtype=dtype)) and float(far[0, 1]) == 0.0
    assert torch.allclose(far[0, [0, 2]], torch.full((2,), 0.1, dtype=dtype))
    near = min_norm_step(a[:1], torch.tensor([0.2], dtype=dtype), room[:1], room[:1], norm)
    assert float((a[0] * near[0]).sum()) == pytest.approx(0.2, rel=1e-5)
