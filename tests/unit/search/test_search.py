"""Batched pattern search: one forward pass per poll, chunking, determinism, convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_mlp
from saferisk.data.domain import Domain
from saferisk.errors import ConfigError
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search import Evaluator, Region, SearchConfig, pattern_search, poll_points, reachable_range
from saferisk.search.reach import box_region


class CountingModel:
    """Delegates to a Model and records the batch size of every forward pass."""

    def __init__(self, model):
        self.model = model
        self.batches: list[int] = []

    def forward_flat(self, x):
        self.batches.append(int(x.shape[0]))
        return self.model.forward_flat(x)


def _setup(n=5, chunk_size=8192, mode="gps", **kw):
    model = CountingModel(random_mlp([n, 16, 16, 1], seed=2))
    x0 = torch.full((n,), 0.5)
    region = Region(x0, 0.4, "inf", torch.zeros(n), torch.ones(n))
    config = SearchConfig(mode=mode, chunk_size=chunk_size, max_iterations=12, mesh_tolerance=1e-9, **kw)
    evaluator = Evaluator(model, lambda z: z[:, 0], config.chunk_size, None)
    starts = region.sample(3, torch.Generator().manual_seed(0))
    return model, region, config, evaluator, starts


def test_poll_points_are_the_2n_mesh_neighbours_scaled_per_feature():
    x = torch.tensor([[1.0, 10.0, 100.0]])
    polls = poll_points(x, torch.tensor([0.5]), torch.tensor([1.0, 10.0, 100.0]), torch.arange(3))
    expected = torch.tensor([[1.5, 10, 100], [1, 15, 100], [1, 10, 150], [0.5, 10, 100], [1, 5, 100], [1, 10, 50]])
    assert polls.shape == (1, 6, 3)
    assert torch.allclose(polls[0], expected)


def test_gps_polls_all_2n_points_of_all_starts_in_one_forward_pass_per_iteration():
    model, region, config, evaluator, starts = _setup()
    start_values = evaluator(starts)
    model.batches.clear()
    result = pattern_search(evaluator, starts, region, config, evaluator, torch.Generator().manual_seed(1),
                            start_values=start_values)
    n, S = region.n, starts.shape[0]
    assert result.iterations == config.max_iterations
    # every iteration: ONE call with 2n poll points for each start still active
    assert len(model.batches) == result.iterations, model.batches
    assert model.batches[0] == S * 2 * n
    assert all(b % (2 * n) == 0 and 0 < b <= S * 2 * n for b in model.batches)
    assert evaluator.evaluations == S + sum(model.batches)
    # the search never leaves the region and never gets worse than its starts
    assert bool((region.distance(result.x) <= region.radius + 1e-6).all())
    assert bool((result.value <= start_values + 1e-7).all())
    assert torch.allclose(result.value, model.model.forward_flat(result.x)[:, 0])


def test_chunking_gives_several_calls_and_the_same_result():
    big = _setup(chunk_size=8192)
    small = _setup(chunk_size=7)
    results = []
    for model, region, config, evaluator, starts in (big, small):
        model.batches.clear()
        results.append(pattern_search(evaluator, starts, region, config, evaluator, torch.Generator().manual_seed(1)))
    assert max(small[0].batches) <= 7
    assert len(small[0].batches) > 2 * len(big[0].batches)
    assert sum(small[0].batches) == sum(big[0].batches)
    assert torch.allclose(results[0].x, results[1].x) and torch.allclose(results[0].value, results[1].value)


def test_fast_mode_polls_a_random_subspace():
    model, region, config, evaluator, starts = _setup(n=40, mode="fast", poll_coordinates=8)
    model.batches.clear()
    pattern_search(evaluator, starts, region, config, evaluator, torch.Generator().manual_seed(1))
    assert model.batches[1] == starts.shape[0] * 2 * 8  # [0]: the start values


def test_pattern_search_finds_the_minimum_of_a_convex_function_with_scaled_features():
    lower = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    upper = torch.tensor([1.0, 1e4, 1.0], dtype=torch.float64)
    target = torch.tensor([0.3, 7000.0, -0.25], dtype=torch.float64)
    scale = upper - lower

    def bowl(x):
        return (((x - target) / scale) ** 2 * torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)).sum(1)

    region = box_region(lower, upper)
    config = SearchConfig(mode="gps", mesh_tolerance=1e-7, max_iterations=400)
    evaluator = Evaluator(None, lambda z: z, budget=None)
    starts = torch.tensor([[0.9, 100.0, 0.9], [0.0, 0.0, -1.0]], dtype=torch.float64)
    result = pattern_search(bowl, starts, region, config, evaluator, torch.Generator().manual_seed(0))
    best = int(result.value.argmin())
    assert float(result.value[best]) < 1e-8
    assert torch.allclose((result.x[best] - target) / scale, torch.zeros(3, dtype=torch.float64), atol=1e-4)


def test_seeded_results_are_reproducible():
    model = random_mlp([6, 24, 4], seed=3)
    domain = Domain.scalar(0.0, 1.0, 6)
    x0 = np.full(6, 0.5)
    search = SearchConfig(budget=3000, n_random=64)
    runs = [compute_radius(model, x0, Robustness(), "2", 1.0, domain, search=search, certify=False, seed=7)
            for _ in range(2)]
    a, b = (r.to_dict() for r in runs)
    for d in (a, b):
        d.pop("seconds"), d.pop("certify_seconds")
    assert a == b
    assert a["seed"] == 7 and a["evaluations"] > 0
    r1 = reachable_range(model, 1, [0.0] * 6, [1.0] * 6, config=SearchConfig(mode="gps", budget=4000), seed=3)
    r2 = reachable_range(model, 1, [0.0] * 6, [1.0] * 6, config=SearchConfig(mode="gps", budget=4000), seed=3)
    assert (r1.min, r1.max, r1.argmin, r1.argmax, r1.evaluations) == (r2.min, r2.max, r2.argmin, r2.argmax, r2.evaluations)


def test_budget_stops_the_search():
    model, region, config, evaluator, starts = _setup()
    evaluator.budget = 100
    pattern_search(evaluator, starts, region, config, evaluator, torch.Generator().manual_seed(1))
    assert evaluator.evaluations <= 100 + starts.shape[0] * 2 * region.n  # at most one poll past the budget


@pytest.mark.parametrize("kw, message", [({"mode": "random"}, "mode"), ({"budget": 0}, "budget"),
                                         ({"expansion": 0.9}, "expansion"), ({"contraction": 1.5}, "contraction"),
                                         ({"mesh_tolerance": 0}, "mesh_tolerance")])
def test_search_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**kw)
    with pytest.raises(ConfigError, match="unknown search option"):
        SearchConfig.from_dict({"budjet": 3})


def test_search_config_paper_defaults():
    assert SearchConfig().factors(2) == (1.3, 0.8)
    assert SearchConfig().factors(784) == (2.0, 0.5)
