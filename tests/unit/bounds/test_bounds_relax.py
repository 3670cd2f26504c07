"""The elementwise linear relaxations are sound on their whole interval (dense sampling)."""

from __future__ import annotations

import pytest
import torch

from saferisk.bounds.relax import leaky_relu_relax, lipschitz_grid_relax, lipschitz_grid_values, s_shaped_relax
from saferisk.models.activations import ACTIVATIONS


def _intervals(count=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(count, generator=g, dtype=torch.float64) * 4
    width = torch.rand(count, generator=g, dtype=torch.float64) ** 3 * 10
    width[:50] = 0.0  # degenerate intervals
    width[50:100] = 1e-10
    return centre - width / 2, centre + width / 2, g


def _check(fn, lines, lower, upper, g):
    al, bl, au, bu = lines
    t = torch.rand(257, lower.numel(), generator=g, dtype=torch.float64)
    t[0], t[1] = 0.0, 1.0  # the end points
    x = lower + (upper - lower) * t
    y = fn(x)
    assert bool((al * x + bl <= y + 1e-9).all()), float((al * x + bl - y).max())
    assert bool((au * x + bu >= y - 1e-9).all()), float((y - au * x - bu).max())


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3, -0.2, 1.5])
def test_leaky_relu_relaxation_sound_for_any_alpha(slope):
    lower, upper, g = _intervals(seed=int(slope * 100) + 7)
    fn = lambda x: torch.where(x >= 0, x, slope * x)  # noqa: E731
    for alpha in (None, torch.zeros_like(lower), torch.ones_like(lower), torch.rand(lower.shape, generator=g, dtype=torch.float64)):
        _check(fn, leaky_relu_relax(lower, upper, slope, alpha), lower, upper, g)


@pytest.mark.parametrize("op", ["tanh", "sigmoid"])
def test_s_shaped_relaxation_sound(op):
    lower, upper, g = _intervals(seed=3)
    fn = torch.tanh if op == "tanh" else torch.sigmoid
    lines = s_shaped_relax(op, lower, upper)
    _check(fn, lines, lower, upper, g)
    # and tight where the function is nearly linear: the gap shrinks with the width
    narrow = (upper - lower) < 1e-3
    gap = (lines[3] - lines[1])[narrow]
    assert bool((gap < 1e-6 + 1e-9).all())


# each activation with its default attributes and with others (negative alpha, a steep slope)
ACTIVATION_CASES = [(op, dict(ACTIVATIONS[op].onnx_defaults)) for op in sorted(ACTIVATIONS) if op != "clip"] + [
    ("elu", {"alpha": 2.5}), ("elu", {"alpha": -0.5}), ("selu", {"alpha": 0.5, "gamma": 2.0}), ("celu", {"alpha": 0.3}),
    ("gelu", {"approximate": "tanh"}), ("hardsigmoid", {"alpha": -3.0, "beta": 0.2}),
    ("clip", {"min": 0.0, "max": 6.0}), ("clip", {"min": -1.0, "max": 1.0}), ("clip", {"min": None, "max": 0.5})]


@pytest.mark.parametrize("op, attrs", ACTIVATION_CASES)
def test_activation_lipschitz_constant_bounds_the_derivative(op, attrs):
    activation = ACTIVATIONS[op]
    x = torch.linspace(-30, 30, 600_001, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(activation.fn(x, attrs).sum(), x)
    assert float(grad.abs().max()) <= activation.lipschitz(attrs)


@pytest.mark.parametrize("op, attrs", ACTIVATION_CASES)
def test_lipschitz_grid_relaxation_sound_and_tight(op, attrs):
    lower, upper, g = _intervals(seed=11)
    activation = ACTIVATIONS[op]
    fn = lambda x: activation.fn(x, attrs)  # noqa: E731
    lipschitz = activation.lipschitz(attrs)
    lines = lipschitz_grid_relax(fn, lipschitz, lower, upper)
    _check(fn, lines, lower, upper, g)
    low, high = lipschitz_grid_values(fn, lipschitz, lower, upper)  # interval bounds (IBP)
    _check(fn, (torch.zeros_like(low), low, torch.zeros_like(high), high), lower, upper, g)
    # the lines are at most (L + |k|) h apart beyond the function's own curvature: on a
    # degenerate interval they meet f's value
    gap = lines[3] - lines[1]
    assert bool((gap[:50] < 1e-8).all())
    assert bool((gap <= (upper - lower) * (lipschitz + lines[0].abs()) * 2 + 1e-8).all())
