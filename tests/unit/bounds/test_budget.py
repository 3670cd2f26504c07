"""saferisk.bounds.budget: work units end a certification the same way on any machine."""

from __future__ import annotations

import time

import torch

from saferisk.bounds import CertifyConfig, certify_radius
from saferisk.bounds.budget import Budget
from saferisk.data.domain import Domain
from saferisk.models.graph import GraphModule
from saferisk.properties import Robustness
from tests.conftest import random_mlp


def test_work_budget_parts_and_clock_cap():
    budget = Budget(work=10, seconds=None)
    part = budget.share(0.5)
    budget.spend(4)
    assert not part.over() and part.remaining() == 1
    budget.spend(1)
    assert part.over() and not budget.over() and budget.remaining() == 5
    budget.spend(5)
    assert budget.over() and budget.exhausted() and not budget.capped
    clock = Budget(work=None, seconds=0.0)
    time.sleep(0.001)
    assert clock.over() and clock.capped and not clock.exhausted()
    timed = Budget(work=None, seconds=10.0).share(0.0)  # a time-only budget shares time
    time.sleep(0.001)
    assert timed.over() and not timed.capped


def _problem(seed=3):
    model = random_mlp([3, 40, 40, 3], seed=seed)
    graph = model.graph
    x0 = torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)
    z0 = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    return graph, Robustness().bind(z0).spec(), x0, Domain.scalar(-1, 1, 3)


def test_a_work_budget_gives_the_same_certificate_however_slow_the_machine(monkeypatch):
    """The work units, not the clock, end the search: the same radius with a clock 1000x slower."""
    graph, spec, x0, domain = _problem()
    config = CertifyConfig(work_budget=12, time_budget_s=1e6)
    fast = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=config)
    assert fast.budget_exhausted and not fast.clock_capped and fast.work >= 12
    real = time.perf_counter
    start = real()
    monkeypatch.setattr(time, "perf_counter", lambda: start + (real() - start) * 1000.0)
    slow = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=config)
    assert (slow.radius_lower, slow.method, slow.work) == (fast.radius_lower, fast.method, fast.work)
    assert not slow.clock_capped


def test_the_clock_cap_is_flagged_as_machine_dependent():
    graph, spec, x0, domain = _problem()
    capped = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=CertifyConfig(work_budget=None,
                                                                                        time_budget_s=1e-9))
    assert capped.budget_exhausted and capped.clock_capped
    ample = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=CertifyConfig(work_budget=None,
                                                                                      time_budget_s=60))
    assert not ample.clock_capped and (capped.radius_lower or 0.0) <= ample.radius_lower
