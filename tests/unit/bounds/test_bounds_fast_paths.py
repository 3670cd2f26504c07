"""Soundness of the faster / tighter pieces of saferisk.bounds: forward linear bounds (input
splitting), the lambda-combined bound of a max over spec rows, the early-stopping radius search,
and input splitting with disjunctive specs (never 'verified' where a violation exists)."""

from __future__ import annotations

import time

import pytest
import torch

from saferisk.bounds import BoundEngine, CertifyConfig, InputRegion, certify_radius
from saferisk.bounds.budget import Budget
from saferisk.bounds.bab import input_split, max_affine_lower_bound
from saferisk.bounds.methods import Adam
from saferisk.bounds.spec import SpecRows
from saferisk.data.domain import Domain
from saferisk.models.graph import Graph, GraphModule, Node, run_node
from saferisk.properties import Robustness
from saferisk.properties.base import MinMaxSpec
from test_bounds_soundness import ZOO, _samples, mlp


def _node_values(engine: BoundEngine, x: torch.Tensor) -> dict:
    values = {engine.input_name: x.reshape((x.shape[0],) + engine.input_shape)}
    for node in engine.nodes:
        values[node.output] = run_node(node, [values[i] for i in node.inputs])
    return values


def _with_input_affine(graph: Graph, seed: int) -> Graph:
    """The graph behind an elementwise input normalisation (x - mean) * scale (negative scales too)."""
    g = torch.Generator().manual_seed(seed)
    n = graph.input_shape[0]
    affine = Node("affine", ["xin"], "x", {"scale": torch.randn(n, generator=g), "shift": torch.randn(n, generator=g)},
                  {}, "normalise")
    return Graph("xin", graph.output_name, graph.input_shape, [affine] + list(graph.nodes))


@pytest.mark.parametrize("index", range(len(ZOO)))
def test_forward_bounds_contain_every_sampled_intermediate_value(index):
    name, graph, _ = ZOO[index]
    engine = BoundEngine(_with_input_affine(graph, index) if name.startswith("mlp") else graph)
    assert engine.supports_forward() == name.startswith("mlp"), name
    if not engine.supports_forward():
        return
    gen = torch.Generator().manual_seed(index)
    n = engine.n_inputs
    for norm, radius in (("inf", 0.4), ("2", 0.6), ("1", 0.8)):
        x0 = torch.rand(n, generator=gen, dtype=torch.float64) - 0.5
        lo, hi = -torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
        inset = InputRegion.ball(x0, torch.tensor([radius], dtype=torch.float64), norm, lo, hi)
        ibp = engine.ibp(inset)
        bounds = engine.forward_bounds(inset, ibp)
        values = _node_values(engine, _samples(x0, radius, norm, lo, hi, 4000, gen))
        tighter = 0
        for pre in engine.pre_nodes:
            b_lo, b_hi = bounds[pre]
            v = values[pre]
            assert bool((v >= b_lo - 1e-9).all() and (v <= b_hi + 1e-9).all()), (name, norm, pre)
            tighter += int(((b_hi - b_lo) < (ibp[pre][1] - ibp[pre][0]) - 1e-12).sum())
        assert tighter > 0 or len(engine.pre_nodes) == 1  # tighter than IBP somewhere past layer 1


def test_max_affine_lower_bound_is_sound_and_no_worse_than_the_best_row():
    gen = torch.Generator().manual_seed(0)
    B, n = 6, 4
    group = torch.tensor([0, 0, 0, 1, 1])
    rows = SpecRows(torch.zeros(5, 2, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), group, 2, True)
    A = torch.randn(B, 5, n, generator=gen, dtype=torch.float64)
    c = torch.randn(B, 5, generator=gen, dtype=torch.float64)
    lo = torch.rand(B, n, generator=gen, dtype=torch.float64) - 1
    hi = lo + torch.rand(B, n, generator=gen, dtype=torch.float64)
    inset = InputRegion.box(lo, hi)
    separate = rows.combine(inset.min_linear(A) + c)
    bound, coef = max_affine_lower_bound(inset, A, c, rows, torch.full((B,), -1e9, dtype=torch.float64))
    assert coef.shape == (B, n)
    assert bool((bound >= separate - 1e-12).all())
    pts = lo[:, None] + (hi - lo)[:, None] * torch.rand(B, 20000, n, generator=gen, dtype=torch.float64)
    vals = torch.einsum("bsn,bpn->bps", A, pts) + c[:, None]
    s = torch.stack([vals[..., group == j].amax(-1) for j in range(2)], -1).amin(-1).amin(-1)  # (B,)
    assert bool((bound <= s + 1e-9).all()), (bound, s)
    assert bool((bound > separate + 1e-6).any())  # combining rows pays somewhere


def test_adam_ascends_a_concave_objective():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt = Adam([x], lr=0.1)
    for _ in range(300):
        (((x - target) ** 2).sum()).backward()
        opt.step()
    assert torch.allclose(x.detach(), target, atol=1e-2)


def test_radius_search_stops_once_within_tolerance_of_the_witness():
    graph, _ = mlp(3, 3, [10, 8], 3, ["relu"])
    run = GraphModule(graph.to("cpu", torch.float64))
    x0 = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    bound = Robustness().bind(run(x0[None])[0])
    domain = Domain.scalar(-1, 1, 3)
    crown = certify_radius(graph, bound.spec(), x0, "inf", 1.0, domain, config=CertifyConfig(method="crown"))
    assert crown.radius_lower > 0
    hint = crown.radius_lower * 1.005  # pretend a witness sits just above: nothing left to gain
    cert = certify_radius(graph, bound.spec(), x0, "inf", 1.0, domain, config=CertifyConfig(time_budget_s=20),
                          upper_hint=hint)
    assert cert.method == "crown" and cert.seconds < 2.0, cert
    assert crown.radius_lower * (1 - 1e-9) <= cert.radius_lower <= hint
    default = CertifyConfig()
    # the default effort per input is a modest work budget (the same on every machine), the clock only a cap
    assert default.work_budget is not None and default.work_budget <= 1000 and default.tolerance >= 0.005


def test_input_split_with_disjunctive_specs_never_verifies_a_violation():
    """'some other output exceeds output 0' (a max over rows, as in ACAS Xu prop 2), on boxes
    around its boundary; a violation found by sampling forbids 'verified'."""
    outcomes = {"verified": 0, "falsified": 0, "unknown": 0}
    for seed in range(16):
        graph, _ = mlp(900 + seed, 3, [12, 10], 4, ["relu"])
        engine = BoundEngine(_with_input_affine(graph, seed))
        gen = torch.Generator().manual_seed(seed)
        spec = MinMaxSpec.from_rows([[([-1.0] + [1.0 if k == r else 0.0 for k in range(1, 4)], 0.0)
                                      for r in range(1, 4)]], 4)
        rows = SpecRows.from_spec(spec, engine)
        x0 = torch.rand(3, generator=gen, dtype=torch.float64) - 0.5
        half = 0.05 + 0.5 * float(torch.rand(1, generator=gen))
        lo, hi = (x0 - half)[None], (x0 + half)[None]
        pts = lo + (hi - lo) * torch.rand(6000, 3, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            violated = bool((spec.evaluate(engine.forward(pts)) <= 0).any())
        verdict = input_split(engine, rows, InputRegion.box(lo, hi), Budget(work=None, seconds=0.5))
        outcomes[verdict] += 1
        if violated:
            assert verdict != "verified", seed
    print("disjunctive input splitting:", outcomes)
    assert outcomes["verified"] > 0
