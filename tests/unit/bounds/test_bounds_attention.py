"""Soundness of the bounds of softmax (anywhere), layernorm and matmul of two variables, which
the engine rewrites into primitive nodes (saferisk/bounds/decompose.py) with the convex ops exp,
reciprocal, rsqrt and square (relax.convex_relax).

- the convex relaxation lines hold pointwise on dense grids over random (tiny, wide, degenerate,
  unbounded) intervals, and the interval ranges contain f;
- per composite op, small graphs: the rewrite computes the same function, and IBP / CROWN /
  alpha-CROWN bounds over L-inf, L2 and L1 balls (small and large radii) contain thousands of
  sampled outputs, as do CROWN's intermediate bounds of every relaxed node;
- an attention block (Q K^T, softmax, A V, residual, layernorm, head) and a layernorm MLP:
  sound bounds, a certified radius > 0 that never exceeds the distance of a found violation,
  and branch and bound (input and ReLU splitting) never verifying a box with a violation.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from saferisk.bounds import BoundEngine, CertifyConfig, UnsupportedGraph, certify_radius
from saferisk.bounds.bab import input_split, relu_split
from saferisk.bounds.budget import Budget
from saferisk.bounds.forward import forward_supported
from saferisk.bounds.ops import COMPOSITE_OPS, CONVEX_OPS, convex_interval, elementwise_lines, run_node
from saferisk.bounds.relax import EXP_LINE_MAX, convex_range, convex_relax
from saferisk.bounds.sets import InputRegion
from saferisk.bounds.spec import SpecRows
from saferisk.data.domain import Domain
from saferisk.models.graph import Graph, GraphModule, Node
from saferisk.norms import distance
from saferisk.properties import Robustness
from tests.unit.bounds.test_bounds_soundness import _ball_bounds, _samples

F64 = torch.float64
FUNCTIONS = {"exp": torch.exp, "reciprocal": lambda y: 1 / y, "rsqrt": torch.rsqrt, "square": lambda y: y * y}


# ----------------------------------------------------------------------------- relaxation lines

def _intervals(op: str, count: int = 3000, seed: int = 0):
    """Random [l, u] in f's domain: wide, narrow, tiny (1e-10) and degenerate ones."""
    g = torch.Generator().manual_seed(seed)
    width = torch.rand(count, generator=g, dtype=F64) ** 3 * 30
    width[:40], width[40:80], width[80:120] = 0.0, 1e-10, 1e-6
    if op in ("reciprocal", "rsqrt"):  # y > 0, from 1e-8 up
        lower = 10 ** (torch.rand(count, generator=g, dtype=F64) * 10 - 8)
        return lower, lower + width * lower.clamp_min(1e-3), g
    centre = torch.randn(count, generator=g, dtype=F64) * (8 if op == "exp" else 5)
    return centre - width / 2, centre + width / 2, g


def _grid(lower, upper, g, points: int = 257):
    t = torch.rand(points, lower.numel(), generator=g, dtype=F64)
    t[0], t[1], t[2] = 0.0, 1.0, 0.5  # the ends and the midpoint
    return lower + (upper - lower) * t


def _assert_lines_hold(f, lines, x):
    al, bl, au, bu = lines
    y = f(x)
    slack = 1e-9 * (1 + y.abs())
    below, above = al * x + bl - y, y - (au * x + bu)
    assert bool((below <= slack).all()), float(below.max())
    assert bool((above <= slack).all()), float(above.max())


@pytest.mark.parametrize("op", sorted(FUNCTIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_convex_lines_hold_on_dense_grids(op, seed):
    lower, upper, g = _intervals(op, seed=seed)
    lines = convex_relax(op, lower, upper)
    assert all(bool(torch.isfinite(t).all()) for t in lines)  # no line is missing on these
    x = _grid(lower, upper, g)
    _assert_lines_hold(FUNCTIONS[op], lines, x)
    low, high = convex_range(op, lower, upper)
    y = FUNCTIONS[op](x)
    assert bool((y >= low * (1 - 1e-12) - 1e-300).all() and (y <= high * (1 + 1e-12)).all())
    # tight: the band is narrow where f is nearly linear on [l, u] (a tangent / chord mix-up fails)
    al, bl, au, bu = lines
    narrow = (upper - lower) <= 1e-6 * lower.abs()
    gap = ((au - al) * x + bu - bl)[:, narrow]
    assert bool((gap <= 1e-7 * (1 + y[:, narrow].abs())).all()), float(gap.max())


def test_convex_lines_missing_only_where_float64_cannot_hold_them():
    lower = torch.tensor([-3.0, 250.0, 100.0, -1e4], dtype=F64)
    upper = torch.tensor([EXP_LINE_MAX + 10, EXP_LINE_MAX + 50, 200.0, 5.0], dtype=F64)
    al, bl, au, bu = convex_relax("exp", lower, upper)
    assert torch.isinf(bu).tolist() == [True, True, False, False] and bool((au[:2] == 0).all())
    _assert_lines_hold(torch.exp, (al, bl, au, bu), _grid(lower, upper, torch.Generator().manual_seed(0)))
    # 1/y and y^-1/2 on [l, inf): finite lines (the upper one the constant f(l))
    for op in ("reciprocal", "rsqrt"):
        lo, hi = torch.tensor([0.5, 2.0], dtype=F64), torch.tensor([math.inf, math.inf], dtype=F64)
        al, bl, au, bu = convex_relax(op, lo, hi)
        assert all(bool(torch.isfinite(t).all()) for t in (al, bl, au, bu))
        x = torch.tensor([[0.5, 2.0], [1.0, 3.0], [1e300, 1e300]], dtype=F64)
        _assert_lines_hold(FUNCTIONS[op], (al, bl, au, bu), x)


@pytest.mark.parametrize("op, attrs", [("reciprocal", {"floor": 1.0}), ("rsqrt", {"epsilon": 1e-5}),
                                       ("rsqrt", {"epsilon": 0.3})])
def test_node_lines_apply_the_domain_the_rewrite_guarantees(op, attrs):
    """reciprocal's input is >= floor, rsqrt's (a variance) >= 0: bounds below that are raised."""
    g = torch.Generator().manual_seed(4)
    lower = torch.randn(2000, generator=g, dtype=F64) * 3
    upper = lower + torch.rand(2000, generator=g, dtype=F64) ** 2 * 20
    node = Node(op, ["v"], "y", {}, attrs)
    floor = attrs.get("floor", 0.0)
    lo, hi = lower.clamp_min(floor), torch.maximum(upper, lower.clamp_min(floor))
    x = _grid(lo, hi, g)
    f = lambda v: run_node(node, [v])  # noqa: E731
    _assert_lines_hold(f, elementwise_lines(node, lower, upper), x)
    low, high = convex_interval(node, lower, upper)
    assert bool((f(x) >= low - 1e-12).all() and (f(x) <= high + 1e-12).all())


# ----------------------------------------------------------------------------- graphs

def _lin(name, src, out_features, in_features, g, scale=1.0):
    W = torch.randn(out_features, in_features, generator=g) / math.sqrt(in_features) * scale
    return Node("linear", [src], name, {"weight": W, "bias": torch.randn(out_features, generator=g) * 0.3}, name=name)


def _head(src, shape, m, g):
    return [Node("flatten", [src], "flat", name="flat"), _lin("out", "flat", m, math.prod(shape), g)]


def matmul_graph(seed: int, T: int = 3, E: int = 4, m: int = 3):
    """A = x W1 (T, E), B = (x W2)^T (E, T), relu(A) @ B, and (A B) @ x: both operands variable."""
    g = torch.Generator().manual_seed(seed)
    nodes = [_lin("a", "x", E, E, g), _lin("b", "x", E, E, g), Node("relu", ["a"], "ra", name="relu"),
             Node("transpose", ["b"], "bt", attrs={"perm": [1, 0]}, name="bt"),
             Node("matmul", ["ra", "bt"], "ab", name="ab"), Node("matmul", ["ab", "x"], "abx", name="abx")]
    return Graph("x", "out", (T, E), nodes + _head("abx", (T, E), m, g))


def softmax_graph(seed: int, axis: int, T: int = 3, E: int = 4, m: int = 3):
    """linear (x 3: logits up to ~10) -> softmax over `axis` (2: last, 1: the tokens) -> relu head."""
    g = torch.Generator().manual_seed(seed)
    nodes = [_lin("z", "x", E, E, g, scale=3.0), Node("softmax", ["z"], "p", attrs={"axis": axis}, name="softmax"),
             _lin("h", "p", E, E, g), Node("relu", ["h"], "rh", name="relu")]
    return Graph("x", "out", (T, E), nodes + _head("rh", (T, E), m, g))


def layernorm_graph(seed: int, axis: int, affine: bool, T: int = 3, E: int = 4, m: int = 3):
    """linear -> layernorm over axes axis.. (with or without scale / bias) -> relu head."""
    g = torch.Generator().manual_seed(seed)
    shape = (E,) if axis == 2 else (T, E)
    params = ({"scale": torch.rand(shape, generator=g) + 0.5, "bias": torch.randn(shape, generator=g) * 0.3}
              if affine else {"scale": None, "bias": None})
    nodes = [_lin("z", "x", E, E, g), Node("layernorm", ["z"], "n", params, {"axis": axis, "epsilon": 1e-5}, name="ln"),
             Node("relu", ["n"], "rn", name="relu")]
    return Graph("x", "out", (T, E), nodes + _head("rn", (T, E), m, g))


def attention_graph(seed: int, T: int = 3, E: int = 4, m: int = 3):
    """One attention block: Q, K, V projections, softmax(Q K^T / sqrt(E)) V, residual, layernorm,
    relu MLP head."""
    g = torch.Generator().manual_seed(seed)
    nodes = [_lin("q", "x", E, E, g), _lin("k", "x", E, E, g), _lin("v", "x", E, E, g),
             Node("transpose", ["k"], "kt", attrs={"perm": [1, 0]}, name="kt"),
             Node("matmul", ["q", "kt"], "s", name="qk"),
             Node("affine", ["s"], "ss", {"scale": torch.tensor(1 / math.sqrt(E)), "shift": None}, name="scale"),
             Node("softmax", ["ss"], "att", attrs={"axis": 2}, name="attention"),
             Node("matmul", ["att", "v"], "o", name="av"), Node("add", ["o", "x"], "res", name="residual"),
             Node("layernorm", ["res"], "n",
                  {"scale": torch.rand(E, generator=g) + 0.5, "bias": torch.randn(E, generator=g) * 0.2},
                  {"axis": 2, "epsilon": 1e-5}, name="ln"),
             _lin("h", "n", E, E, g), Node("relu", ["h"], "rh", name="relu")]
    return Graph("x", "out", (T, E), nodes + _head("rh", (T, E), m, g))


def layernorm_mlp(seed: int, n: int = 5, h: int = 8, m: int = 3):
    g = torch.Generator().manual_seed(seed)
    nodes = [_lin("l1", "x", h, n, g), Node("layernorm", ["l1"], "n1", {"scale": torch.rand(h, generator=g) + 0.5,
                                                                          "bias": torch.randn(h, generator=g) * 0.3},
                                              {"axis": 1, "epsilon": 1e-5}, name="ln1"),
             Node("relu", ["n1"], "r1", name="relu1"), _lin("l2", "r1", h, h, g),
             Node("layernorm", ["l2"], "n2", {"scale": None, "bias": None}, {"axis": 1, "epsilon": 1e-3}, name="ln2"),
             Node("tanh", ["n2"], "t2", name="tanh"), _lin("out", "t2", m, h, g)]
    return Graph("x", "out", (n,), nodes)


def instancenorm_graph(seed: int, C: int = 2, H: int = 2, W: int = 3, m: int = 3):
    """conv -> InstanceNormalization (per-channel scale, bias) -> relu head (GroupNorm as exported)."""
    g = torch.Generator().manual_seed(seed)
    nodes = [Node("conv", ["x"], "c", {"weight": torch.randn(C, 1, 1, 1, generator=g), "bias": torch.randn(C, generator=g)},
                  {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1}, name="conv"),
             Node("instancenorm", ["c"], "n", {"scale": torch.rand(C, generator=g) + 0.5,
                                               "bias": torch.randn(C, generator=g) * 0.3}, {"epsilon": 1e-5}, name="in"),
             Node("relu", ["n"], "rn", name="relu")]
    return Graph("x", "out", (1, H, W), nodes + _head("rn", (C, H, W), m, g))


def reduce_graph(seed: int, op: str, axes: list[int], keepdims: bool, T: int = 3, E: int = 5, m: int = 3):
    """linear -> reduce_max / reduce_min over `axes` (odd and even counts) -> linear head."""
    g = torch.Generator().manual_seed(seed)
    nodes = [_lin("z", "x", E, E, g), Node(op, ["z"], "r", attrs={"axes": axes, "keepdims": keepdims}, name=op)]
    kept = tuple(1 if i + 1 in axes else d for i, d in enumerate((T, E))) if keepdims else \
        tuple(d for i, d in enumerate((T, E)) if i + 1 not in axes)
    return Graph("x", "out", (T, E), nodes + _head("r", kept, m, g))


GRAPHS = ([(f"matmul-{s}", matmul_graph(s)) for s in range(2)]
          + [(f"softmax-axis{a}-{s}", softmax_graph(s, a)) for s in range(2) for a in (2, 1)]
          + [(f"layernorm-axis{a}-{'affine' if f else 'plain'}", layernorm_graph(3 + a, a, f))
             for a in (2, 1) for f in (True, False)]
          + [("attention", attention_graph(0)), ("attention-T4E6", attention_graph(1, T=4, E=6)),
             ("layernorm-mlp", layernorm_mlp(0))]
          + [(f"instancenorm-{s}", instancenorm_graph(s)) for s in range(2)]
          + [(f"{op}-{axes}-{keep}", reduce_graph(7, op, axes, keep)) for op in ("reduce_max", "reduce_min")
             for axes, keep in (([2], True), ([1, 2], False), ([1], False))])
RADII = {"inf": (0.02, 0.3, 2.0), "2": (0.05, 0.8, 4.0), "1": (0.1, 1.5, 8.0)}


def _node_values(engine: BoundEngine, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every value of the engine's (rewritten) nodes at inputs x (B, *shape)."""
    values = {engine.input_name: x}
    for node in engine.nodes:
        if node.op == "constant":
            values[node.output] = node.params["value"].expand((x.shape[0],) + tuple(node.params["value"].shape))
        else:
            values[node.output] = run_node(node, [values[i] for i in node.inputs])
    return values


def _within(values, lower, upper, what):
    slack = 1e-6 * (1 + values.abs())
    assert bool((values >= lower - slack).all()), (what, float((lower - values).max()))
    assert bool((values <= upper + slack).all()), (what, float((values - upper).max()))


@pytest.mark.parametrize("name, graph", GRAPHS, ids=[name for name, _ in GRAPHS])
def test_rewrite_computes_the_graph_and_is_not_forward_bounded(name, graph):
    engine = BoundEngine(graph)
    assert not ({n.op for n in engine.nodes} & COMPOSITE_OPS)
    if {n.op for n in engine.nodes} & (CONVEX_OPS | {"mul"}):  # no forward rule for them (yet)
        assert not forward_supported(engine)
    x = torch.randn(64, graph.n_inputs, generator=torch.Generator().manual_seed(1), dtype=F64) * 2
    expected = GraphModule(graph.to("cpu", F64))(x.reshape(-1, *graph.input_shape))
    assert torch.allclose(engine.forward(x), expected, atol=1e-12, rtol=1e-10), name
    labels = {n.name for n in graph.nodes}
    assert {n.name for n in engine.nodes} <= labels  # reasons name the user's nodes


@pytest.mark.parametrize("name, graph", GRAPHS, ids=[name for name, _ in GRAPHS])
def test_bounds_contain_sampled_outputs_and_intermediate_values(name, graph):
    engine = BoundEngine(graph)
    n, shape = graph.n_inputs, graph.input_shape
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    lo, hi = -2 * torch.ones(n, dtype=F64), 2 * torch.ones(n, dtype=F64)
    for norm, radii in RADII.items():
        x0 = lo / 2 + (hi - lo) / 2 * torch.rand(n, generator=gen, dtype=F64)
        for radius in radii:
            pts = _samples(x0, radius, norm, lo, hi, 2500, gen)
            values = _node_values(engine, pts.reshape(-1, *shape))
            out = values[engine.output_name].reshape(len(pts), -1)
            for method in ("ibp", "crown", "alpha-crown"):
                lb, ub = _ball_bounds(engine, x0, radius, norm, lo, hi, method)
                assert bool(torch.isfinite(lb).all() and torch.isfinite(ub).all()), (name, norm, radius, method)
                _within(out, lb, ub, (name, norm, radius, method))
            inset = InputRegion.ball(x0, torch.tensor([radius], dtype=F64), norm, lo, hi)
            bounds = engine.intermediate_bounds(inset, "crown")
            for node in engine.pre_nodes:
                _within(values[node], bounds[node][0][0], bounds[node][1][0], (name, norm, radius, node))


@pytest.mark.parametrize("seed", range(3))
def test_huge_logit_ranges_give_finite_sound_bounds(seed):
    """Softmax logits differing by far more than EXP_LINE_MAX (exp overflows float64): IBP and
    CROWN stay finite (no nan) and sound."""
    graph = softmax_graph(seed, 2)
    graph.nodes[0].params["weight"] = graph.nodes[0].params["weight"] * 400
    engine = BoundEngine(graph)
    n = graph.n_inputs
    lo, hi = -torch.ones(n, dtype=F64), torch.ones(n, dtype=F64)
    x0 = torch.zeros(n, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    for radius in (0.001, 0.3, 1.0):
        pts = _samples(x0, radius, "inf", lo, hi, 2000, gen)
        out = engine.forward(pts)
        for method in ("ibp", "crown", "alpha-crown"):
            lb, ub = _ball_bounds(engine, x0, radius, "inf", lo, hi, method)
            assert bool(torch.isfinite(lb).all() and torch.isfinite(ub).all()), (radius, method)
            _within(out, lb, ub, (seed, radius, method))


def _certify_against_samples(graph: Graph, seed: int, method: str, max_radius: dict[str, float]):
    gen = torch.Generator().manual_seed(seed)
    n = graph.n_inputs
    run = GraphModule(graph.to("cpu", F64))
    domain = Domain.scalar(-1.0, 1.0, n)
    x0 = torch.rand(n, generator=gen, dtype=F64) - 0.5
    bound = Robustness().bind(run(x0.reshape(1, *graph.input_shape))[0])
    certified = {}
    for norm, top in max_radius.items():
        cert = certify_radius(graph, bound.spec(), x0, norm, top, domain,
                              config=CertifyConfig(method=method, time_budget_s=5, alpha_iterations=8))
        assert cert.reason is None or "unsupported" not in cert.reason, cert.reason
        assert cert.radius_lower is not None and 0 <= cert.radius_lower <= top
        pts = _samples(x0, top, norm, domain.lower, domain.upper, 4000, gen)
        bad = bound.violated(run(pts.reshape(-1, *graph.input_shape)))
        if bool(bad.any()):
            closest = float(distance(pts[bad], x0, norm).min())
            assert cert.radius_lower <= closest + 1e-9, (norm, cert, closest)
        certified[norm] = cert.radius_lower
    return certified


@pytest.mark.parametrize("seed", range(2))
def test_attention_block_certified_radius_is_positive_and_below_any_violation(seed):
    radii = _certify_against_samples(attention_graph(seed), seed, "alpha-crown", {"inf": 1.0, "2": 3.0, "1": 6.0})
    assert all(r > 0 for r in radii.values()), radii


@pytest.mark.parametrize("seed", range(2))
def test_layernorm_mlp_certified_radius_is_positive_and_below_any_violation(seed):
    radii = _certify_against_samples(layernorm_mlp(seed), seed, "bab", {"inf": 1.0, "2": 2.0, "1": 4.0})
    assert all(r > 0 for r in radii.values()), radii


def test_crown_certifies_more_than_ibp_on_the_attention_block():
    graph = attention_graph(0)
    x0 = torch.linspace(-0.4, 0.4, graph.n_inputs, dtype=F64)
    bound = Robustness().bind(GraphModule(graph.to("cpu", F64))(x0.reshape(1, *graph.input_shape))[0])
    domain = Domain.scalar(-1.0, 1.0, graph.n_inputs)
    radius = {m: certify_radius(graph, bound.spec(), x0, "inf", 1.0, domain, config=CertifyConfig(method=m)).radius_lower
              for m in ("ibp", "crown")}
    assert radius["crown"] >= radius["ibp"] > 0, radius


@pytest.mark.parametrize("split", ["input", "relu"])
def test_branch_and_bound_never_verifies_a_box_with_a_violation(split):
    """Input splitting (an attention block on 6 inputs) and ReLU splitting (a layernorm MLP) on
    boxes from well inside to across the decision boundary."""
    outcomes = {"verified": 0, "falsified": 0, "unknown": 0}
    for seed in range(4):
        graph = attention_graph(seed, T=2, E=3) if split == "input" else layernorm_mlp(10 + seed, n=4)
        engine = BoundEngine(graph)
        n = graph.n_inputs
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.rand(n, generator=gen, dtype=F64) - 0.5
        bound = Robustness().bind(engine.forward(x0[None])[0])
        rows = SpecRows.from_spec(bound.spec(), engine)
        for half in (0.02, 0.1, 0.3):
            lo, hi = (x0 - half)[None], (x0 + half)[None]
            pts = lo + (hi - lo) * torch.rand(4000, n, generator=gen, dtype=F64)
            violated = bool(bound.violated(engine.forward(pts)).any())
            search = input_split if split == "input" else relu_split
            verdict = search(engine, rows, InputRegion.box(lo, hi), Budget(work=None, seconds=0.3))
            outcomes[verdict] += 1
            if violated:
                assert verdict != "verified", (seed, half)
    assert outcomes["verified"] > 0 and outcomes["falsified"] + outcomes["unknown"] > 0, outcomes


def test_unsupported_matmul_and_layernorm_name_the_node():
    g = torch.Generator().manual_seed(0)
    ranks = Graph("x", "out", (4,), [_lin("a", "x", 4, 4, g), _lin("b", "x", 12, 4, g),
                                     Node("reshape", ["b"], "b2", attrs={"shape": [4, 3]}, name="b2"),
                                     Node("matmul", ["a", "b2"], "ab", name="vector_times_matrix"),
                                     _lin("out", "ab", 2, 3, g)])
    with pytest.raises(UnsupportedGraph, match="vector_times_matrix"):  # per-sample ranks 1 and 2
        BoundEngine(ranks)
    wide = Graph("x", "out", (3, 1), [_lin("a", "x", 1, 1, g),  # scale (3, 5) on (3, 1): the shape changes
                                      Node("layernorm", ["a"], "n", {"scale": torch.ones(3, 5), "bias": None},
                                           {"axis": 2, "epsilon": 1e-5}, name="broadcasting_norm")]
                 + _head("n", (3, 5), 2, g))
    with pytest.raises(UnsupportedGraph, match="broadcasting_norm"):
        BoundEngine(wide)


def test_a_users_exp_and_square_are_bounded_and_other_powers_are_refused_by_name():
    """The reader's Exp and Pow(x, 2) (e.g. an RBF-style layer) get the convex relaxations;
    Pow with another exponent is unsupported with the node named."""
    from saferisk.bounds import BoundEngine
    from saferisk.bounds.ops import UnsupportedGraph
    from saferisk.models.graph import Graph, GraphModule, Node
    from tests.unit.bounds.test_bounds_soundness import _ball_bounds

    weight = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]], dtype=torch.float64)
    nodes = [Node("linear", ["x"], "h", {"weight": weight, "bias": None}, {}, "proj"),
             Node("pow", ["h"], "sq", {}, {"exponent": 2.0}, "square"),
             Node("affine", ["sq"], "neg", {"scale": torch.tensor(-1.0, dtype=torch.float64), "shift": None}, {}, "neg"),
             Node("exp", ["neg"], "y", {}, {}, "rbf")]
    graph = Graph("x", "y", (3,), nodes)
    engine = BoundEngine(graph)
    gen = torch.Generator().manual_seed(5)
    lo, hi = -torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    x0 = torch.rand(3, generator=gen, dtype=torch.float64) - 0.5
    for radius in (0.05, 0.5):
        points = (x0 + (torch.rand(4000, 3, generator=gen, dtype=torch.float64) * 2 - 1) * radius).clamp(-1, 1)
        out = GraphModule(graph)(points)
        for method in ("ibp", "crown"):
            low, high = _ball_bounds(engine, x0, radius, "inf", lo, hi, method)
            assert bool((out >= low - 1e-9).all()) and bool((out <= high + 1e-9).all()), (radius, method)
    cube = Graph("x", "y", (3,), [Node("pow", ["x"], "y", {}, {"exponent": 3.0}, "cube")])
    with pytest.raises(UnsupportedGraph, match="'pow' in node 'cube'"):
        BoundEngine(cube)
