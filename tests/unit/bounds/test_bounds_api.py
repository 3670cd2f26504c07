"""API behaviour of saferisk.bounds: reasons instead of wrong numbers, caps, softmax, config."""

from __future__ import annotations

import pytest
import torch

from saferisk.bounds import CertifyConfig, bound_outputs, certify_radius, verify_box
from saferisk.data.domain import Domain
from saferisk.errors import ConfigError
from saferisk.models.graph import Graph, GraphModule, Node
from saferisk.properties import Reachability, Robustness, Uncertainty


def _mlp(seed=0, n=3, h=10, m=3, final=None):
    g = torch.Generator().manual_seed(seed)
    nodes = [Node("linear", ["x"], "h", {"weight": torch.randn(h, n, generator=g), "bias": torch.randn(h, generator=g)}, name="fc1"),
             Node("relu", ["h"], "a", name="relu1"),
             Node("linear", ["a"], "z", {"weight": torch.randn(m, h, generator=g), "bias": torch.randn(m, generator=g)}, name="fc2")]
    out = "z"
    if final is not None:
        nodes.append(Node(final, ["z"], "p", {}, {"axis": 1}, name="final"))
        out = "p"
    return Graph("x", out, (n,), nodes)


def test_unsupported_operation_gives_none_with_reason():
    graph = _mlp()
    graph.nodes.insert(2, Node("sqrt", ["a"], "a2", {}, {}, name="normaliser"))
    graph.nodes[3].inputs = ["a2"]
    x0 = torch.zeros(3, dtype=torch.float64)
    z0 = GraphModule(graph)(x0[None].float())[0]
    cert = certify_radius(graph, Robustness().bind(z0).spec(), x0, "inf", 0.5, Domain.scalar(-1, 1, 3))
    assert cert.radius_lower is None and cert.method is None
    assert cert.reason == "unsupported operation 'sqrt' in node 'normaliser'"
    assert verify_box(graph, Robustness().bind(z0).spec(), -torch.ones(3), torch.ones(3), 1.0) == "unknown"


def test_final_softmax_is_passed_and_softmax_inside_the_graph_is_bounded():
    graph = _mlp(final="softmax")
    x0 = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    probs = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    domain = Domain.scalar(-1, 1, 3)
    # robustness rows are pairwise differences: certified on the logits, same as without softmax
    logits_graph = _mlp()
    z0 = GraphModule(logits_graph.to("cpu", torch.float64))(x0[None])[0]
    config = CertifyConfig(method="crown")
    with_softmax = certify_radius(graph, Robustness().bind(probs).spec(), x0, "inf", 1.0, domain, config=config)
    without = certify_radius(logits_graph, Robustness().bind(z0).spec(), x0, "inf", 1.0, domain, config=config)
    assert with_softmax.radius_lower == pytest.approx(without.radius_lower)
    # a reachability threshold on a probability needs the softmax itself: interval bounds, sound
    lb, ub = bound_outputs(graph, -torch.ones(3), torch.ones(3))
    samples = GraphModule(graph.to("cpu", torch.float64))(torch.rand(5000, 3, dtype=torch.float64) * 2 - 1)
    assert bool((samples >= lb - 1e-9).all()) and bool((samples <= ub + 1e-9).all())
    assert bool((ub <= 1).all()) and bool((lb >= 0).all())
    reach = Reachability(output=int(probs.argmax()), lower=0.05).bind(probs)
    cert = certify_radius(graph, reach.spec(), x0, "inf", 1.0, domain)
    assert cert.radius_lower is not None and cert.radius_lower >= 0
    inner = _mlp()
    inner.nodes.insert(2, Node("softmax", ["a"], "sm", {}, {"axis": 1}, name="mid_softmax"))
    inner.nodes[3].inputs = ["sm"]
    z_inner = GraphModule(inner.to("cpu", torch.float64))(x0[None])[0]
    cert = certify_radius(inner, Robustness().bind(z_inner).spec(), x0, "inf", 1.0, domain)
    assert cert.radius_lower is not None and cert.radius_lower > 0, cert


def test_property_failing_at_x0_gives_zero_and_hint_caps_the_radius():
    graph = _mlp()
    x0 = torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)
    z0 = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    domain = Domain.scalar(-1, 1, 3)
    violated = Reachability(output=0, upper=float(z0[0]) - 1.0).bind(z0)
    cert = certify_radius(graph, violated.spec(), x0, "inf", 0.5, domain)
    assert cert.radius_lower == 0.0 and "not positive at x0" in cert.reason
    robust = Robustness().bind(z0).spec()
    free = certify_radius(graph, robust, x0, "inf", 2.0, domain, config=CertifyConfig(method="crown"))
    assert free.radius_lower > 0
    capped = certify_radius(graph, robust, x0, "inf", 2.0, domain, config=CertifyConfig(method="crown"),
                            upper_hint=free.radius_lower / 2)
    assert capped.radius_lower <= free.radius_lower / 2
    assert capped.method in ("ibp", "crown")


def test_scaled_units_and_domain_clipping():
    graph = _mlp(seed=3)
    x0 = torch.tensor([0.9, 0.0, -0.5], dtype=torch.float64)
    z0 = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    spec = Robustness().bind(z0).spec()
    domain = Domain.from_bounds([-1, -10, -1], [1, 10, 1], 3)
    unit = domain.width()
    cert = certify_radius(graph, spec, x0, "inf", 0.5, domain, unit=unit, config=CertifyConfig(method="crown"))
    assert cert.radius_lower is not None
    # check by sampling the certified set in scaled units
    r = cert.radius_lower
    pts = x0 + (torch.rand(4000, 3, dtype=torch.float64) * 2 - 1) * r * unit
    pts = torch.minimum(torch.maximum(pts, domain.lower), domain.upper)
    z = GraphModule(graph.to("cpu", torch.float64))(pts)
    assert not bool(Robustness().bind(z0).violated(z).any())


def test_uncertainty_spec_is_sound_lower_bound():
    graph = _mlp(seed=5)
    x0 = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    z0 = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    bound = Uncertainty(epsilon=0.01).bind(z0)
    cert = certify_radius(graph, bound.spec(), x0, "2", 1.0, Domain.scalar(-1, 1, 3))
    assert cert.radius_lower is not None
    if cert.radius_lower > 0:
        d = torch.randn(4000, 3, dtype=torch.float64)
        pts = x0 + d / d.norm(dim=1, keepdim=True) * cert.radius_lower * torch.rand(4000, 1, dtype=torch.float64)
        pts = pts.clamp(-1, 1)
        z = GraphModule(graph.to("cpu", torch.float64))(pts)
        assert bool((bound.value(z) > bound.threshold).all())


def test_bound_outputs_batched_and_config_validation():
    graph = _mlp()
    lower = torch.tensor([[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    upper = torch.tensor([[1.0, 1.0, 1.0], [0.1, 0.2, 0.3]])
    lb, ub = bound_outputs(graph, lower, upper, method="alpha-crown")
    assert lb.shape == (2, 3) and bool((lb <= ub).all())
    single_lb, _ = bound_outputs(graph, lower[1], upper[1])
    assert single_lb.shape == (3,)
    with pytest.raises(ConfigError):
        CertifyConfig(method="magic")
    with pytest.raises(ConfigError):
        CertifyConfig(tolerance=0)
    assert CertifyConfig().ladder() == ("ibp", "crown", "alpha-crown", "bab")
    assert CertifyConfig(method="crown").ladder() == ("ibp", "crown")


def test_a_search_cut_short_by_the_time_budget_says_so():
    """The only machine-dependent part of a result: flagged, so reports can say which bounds it touched."""
    graph = _mlp(seed=3, n=3, h=40)
    x0 = torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)
    z0 = GraphModule(graph.to("cpu", torch.float64))(x0[None])[0]
    spec, domain = Robustness().bind(z0).spec(), Domain.scalar(-1, 1, 3)
    ample = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=CertifyConfig(method="crown", time_budget_s=30,
                                                                                      work_budget=None))
    assert ample.radius_lower > 0 and not ample.budget_exhausted
    cut = certify_radius(graph, spec, x0, "inf", 2.0, domain, config=CertifyConfig(method="crown", time_budget_s=1e-6))
    assert cut.budget_exhausted and (cut.radius_lower or 0.0) <= ample.radius_lower


def test_memory_limit_gives_the_same_bounds_in_more_passes():
    """Intermediate CROWN bounds run in passes of as many neurons as `memory_bytes` allows:
    the bounds do not depend on it."""
    from saferisk.bounds import BoundEngine, InputRegion

    graph = _mlp(seed=3, n=4, h=24)
    x0 = torch.full((4,), 0.1, dtype=torch.float64)
    inset = InputRegion.ball(x0, torch.tensor([0.3, 0.6], dtype=torch.float64), "inf",
                             -torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    wide, narrow = BoundEngine(graph), BoundEngine(graph)
    narrow.memory_bytes = 1  # one neuron per pass
    assert narrow.rows_per_pass("h", 2) == 1 and wide.rows_per_pass("h", 2) >= 24
    a, b = wide.intermediate_bounds(inset), narrow.intermediate_bounds(inset)
    for name in a:
        assert torch.equal(a[name][0], b[name][0]) and torch.equal(a[name][1], b[name][1]), name


def test_time_budget_is_honoured_inside_a_bound_pass():
    """A deadline that passes inside the intermediate bounds ends the pass (no bound from it)
    and certification reports the exhausted budget instead of overrunning it."""
    import time

    from saferisk.bounds import BoundEngine, InputRegion
    from saferisk.bounds.budget import Budget
    from saferisk.bounds.engine import BoundsDeadline

    graph = _mlp(seed=3, n=4, h=24)
    engine = BoundEngine(graph)
    engine.memory_bytes, engine.budget = 1, Budget(work=None, seconds=0.0)
    time.sleep(0.001)
    inset = InputRegion.ball(torch.zeros(4, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), "inf",
                             -torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    with pytest.raises(BoundsDeadline):
        engine.intermediate_bounds(inset)
    x0 = torch.zeros(4, dtype=torch.float64)
    z0 = GraphModule(graph)(x0[None].float())[0]
    cert = certify_radius(graph, Robustness().bind(z0).spec(), x0, "inf", 0.5, Domain.scalar(-1, 1, 4),
                          config=CertifyConfig(method="crown", time_budget_s=1e-9, memory_mb=16))
    assert cert.seconds < 1.0
    assert cert.radius_lower in (None, 0.0) or cert.budget_exhausted


def test_crown_neuron_limit_keeps_interval_bounds_soundly():
    from saferisk.bounds import BoundEngine, InputRegion

    g = torch.Generator().manual_seed(5)
    graph = Graph("x", "z", (4,), [
        Node("linear", ["x"], "h1", {"weight": torch.randn(24, 4, generator=g), "bias": torch.randn(24, generator=g)}),
        Node("relu", ["h1"], "a1"),
        Node("linear", ["a1"], "h2", {"weight": torch.randn(24, 24, generator=g), "bias": torch.randn(24, generator=g)}),
        Node("relu", ["h2"], "a2"),
        Node("linear", ["a2"], "z", {"weight": torch.randn(3, 24, generator=g), "bias": torch.randn(3, generator=g)})])
    inset = InputRegion.ball(torch.zeros(4, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), "inf",
                             -torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    full, limited = BoundEngine(graph), BoundEngine(graph)
    limited.max_neurons_per_node = 1
    a, b = full.intermediate_bounds(inset), limited.intermediate_bounds(inset)
    width = {name: float((hi - lo).sum()) for name, (lo, hi) in a.items()}
    limited_width = {name: float((hi - lo).sum()) for name, (lo, hi) in b.items()}
    assert limited_width["h2"] > width["h2"]  # interval bounds where CROWN would need many rows
    assert bool((b["h2"][0] <= a["h2"][0] + 1e-12).all() and (b["h2"][1] >= a["h2"][1] - 1e-12).all())
    with pytest.raises(ConfigError, match="crown_max_neurons"):
        CertifyConfig(crown_max_neurons=0)
    with pytest.raises(ConfigError, match="memory_mb"):
        CertifyConfig(memory_mb=1)
