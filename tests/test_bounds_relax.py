"""The elementwise linear relaxations are sound on their whole interval (dense sampling)."""

from __future__ import annotations

import pytest
import torch

from saferisk.bounds.relax import leaky_relu_relax, s_shaped_relax


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
