"""Soundness of saferisk.bounds on many random small networks built directly as Graphs.

Each graph is checked against an equivalent torch nn.Module; then bounds over random
L-inf / L2 / L1 balls intersected with a box must contain the outputs of thousands of sampled
points (interior, sphere surface, L-inf and L1 vertices), certified radii must never exceed the
distance of a found violation, and for tiny ReLU MLPs the certified L-inf and L1 radii are
compared with the EXACT maximum safe radius from a MILP (scipy / HiGHS, big-M from IBP).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from saferisk.bounds.budget import Budget
from saferisk.bounds import BoundEngine, CertifyConfig, InputRegion, certify_radius
from saferisk.bounds.bab import input_split, relu_split
from saferisk.bounds.methods import rows_bound
from saferisk.bounds.spec import SpecRows
from saferisk.data.domain import Domain
from saferisk.models.activations import ACTIVATIONS
from saferisk.bounds import forward
from saferisk.bounds.forward import forward_supported
from saferisk.models.graph import Graph, GraphModule, Node, run_node
from saferisk.norms import distance, project
from saferisk.properties import Robustness

METHODS = ("ibp", "crown", "alpha-crown")


# ----------------------------------------------------------------------------- graph builders

def _lin(name, src, W, b):
    return Node("linear", [src], name, {"weight": W, "bias": b}, name=name)


def _act(op, name, src, **attrs):
    return Node(op, [src], name, {}, attrs, name=name)


class _Torch(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# the graph's activation attrs and the torch.nn layer that computes the same function
ACT_ATTRS = {"leaky_relu": {"alpha": 0.1}, "elu": {"alpha": 0.7}, "selu": ACTIVATIONS["selu"].onnx_defaults,
             "celu": {"alpha": 1.3}, "gelu": {"approximate": "none"}, "hardsigmoid": {"alpha": 1 / 6, "beta": 0.5},
             "clip": {"min": 0.0, "max": 6.0}}
TORCH_ACTS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
              "leaky_relu": lambda: torch.nn.LeakyReLU(0.1), "elu": lambda: torch.nn.ELU(0.7), "selu": torch.nn.SELU,
              "celu": lambda: torch.nn.CELU(1.3), "softplus": torch.nn.Softplus, "softsign": torch.nn.Softsign,
              "erf": lambda: _Torch(torch.erf), "gelu": torch.nn.GELU, "mish": torch.nn.Mish,
              "hardsigmoid": torch.nn.Hardsigmoid, "hardswish": torch.nn.Hardswish, "abs": lambda: _Torch(torch.abs),
              "sin": lambda: _Torch(torch.sin), "cos": lambda: _Torch(torch.cos), "clip": torch.nn.ReLU6}


def mlp(seed: int, n: int, widths: list[int], m: int, acts: list[str]):
    """MLP graph with the given activations (cycled) and an equivalent torch module."""
    g = torch.Generator().manual_seed(seed)
    nodes, layers, src, k = [], [], "x", n
    for i, w in enumerate(widths):
        W, b = torch.randn(w, k, generator=g) / math.sqrt(k) * 1.5, torch.randn(w, generator=g) * 0.5
        act = acts[i % len(acts)]
        nodes += [_lin(f"l{i}", src, W, b), _act(act, f"a{i}", f"l{i}", **ACT_ATTRS.get(act, {}))]
        lin = torch.nn.Linear(k, w)
        lin.weight.data, lin.bias.data = W.clone(), b.clone()
        layers += [lin, TORCH_ACTS[act]()]
        src, k = f"a{i}", w
    W, b = torch.randn(m, k, generator=g) / math.sqrt(k), torch.randn(m, generator=g) * 0.5
    nodes.append(_lin("out", src, W, b))
    lin = torch.nn.Linear(k, m)
    lin.weight.data, lin.bias.data = W.clone(), b.clone()
    layers.append(lin)
    return Graph("x", "out", (n,), nodes), torch.nn.Sequential(*layers)


def residual(seed: int, n: int = 4, h: int = 12, m: int = 3):
    """x -> relu(W1 x) -> W2 . + (W3 x) -> tanh -> concat(relu(.), identity(.)) -> transpose-free out."""
    g = torch.Generator().manual_seed(seed)
    W1, b1 = torch.randn(h, n, generator=g), torch.randn(h, generator=g)
    W2, b2 = torch.randn(h, h, generator=g) / 3, torch.randn(h, generator=g)
    W3 = torch.randn(h, n, generator=g)
    W4, b4 = torch.randn(m, 2 * h, generator=g) / 4, torch.randn(m, generator=g)
    nodes = [_lin("l1", "x", W1, b1), _act("relu", "r1", "l1"), _lin("l2", "r1", W2, b2),
             _lin("skip", "x", W3, None), Node("add", ["l2", "skip"], "sum", name="sum"),
             _act("sigmoid", "s", "sum"), _act("relu", "r2", "sum"), Node("identity", ["s"], "s2", name="id"),
             Node("concat", ["r2", "s2"], "cat", attrs={"axis": 1}, name="cat"), _lin("out", "cat", W4, b4)]

    def fn(x):
        r1 = torch.relu(x @ W1.T + b1)
        total = r1 @ W2.T + b2 + x @ W3.T
        return torch.cat([torch.relu(total), torch.sigmoid(total)], dim=1) @ W4.T + b4
    return Graph("x", "out", (n,), nodes), _Torch(fn)


def cnn(seed: int, channels: int = 2, size: int = 6, m: int = 3):
    """conv -> batchnorm (affine) -> relu -> maxpool -> conv -> leaky -> avgpool -> transpose -> flatten -> linear."""
    g = torch.Generator().manual_seed(seed)
    C1, C2 = 3, 4
    K1, c1 = torch.randn(C1, channels, 3, 3, generator=g) / 3, torch.randn(C1, generator=g) * 0.3
    scale, shift = torch.rand(C1, 1, 1, generator=g) + 0.5, torch.randn(C1, 1, 1, generator=g) * 0.2
    K2, c2 = torch.randn(C2, C1, 2, 2, generator=g) / 2, torch.randn(C2, generator=g) * 0.3
    nodes = [Node("conv", ["x"], "c1", {"weight": K1, "bias": c1}, {"stride": (1, 1), "padding": (1, 1, 1, 1)}, "c1"),
             Node("affine", ["c1"], "bn", {"scale": scale, "shift": shift}, {}, "bn"),
             _act("relu", "r1", "bn"),
             Node("maxpool", ["r1"], "mp", {}, {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0, 0, 0)}, "mp"),
             Node("conv", ["mp"], "c2", {"weight": K2, "bias": c2}, {"stride": (1, 1), "padding": (0, 0, 1, 1)}, "c2"),
             _act("leaky_relu", "r2", "c2", alpha=0.2),
             Node("avgpool", ["r2"], "ap", {}, {"kernel": (2, 2), "stride": (1, 1), "padding": (0, 0, 0, 0)}, "ap"),
             Node("transpose", ["ap"], "tp", {}, {"perm": (1, 2, 0)}, "tp"),
             Node("flatten", ["tp"], "fl", {}, {}, "fl")]
    probe = GraphModule(Graph("x", "fl", (channels, size, size), nodes))(torch.zeros(1, channels, size, size))
    flat = probe.shape[1]
    W, b = torch.randn(m, flat, generator=g) / math.sqrt(flat), torch.randn(m, generator=g)
    nodes.append(_lin("out", "fl", W, b))

    def fn(x):
        y = torch.nn.functional.conv2d(x, K1, c1, padding=1) * scale + shift
        y = torch.nn.functional.max_pool2d(torch.relu(y), 2, 2)
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (0, 1, 0, 1)), K2, c2)
        y = torch.nn.functional.avg_pool2d(torch.nn.functional.leaky_relu(y, 0.2), 2, 1)
        return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1) @ W.T + b
    return Graph("x", "out", (channels, size, size), nodes), _Torch(fn)


def gated(seed: int, n: int = 4, h: int = 8, m: int = 3):
    """Products of two variables: SiLU x sigmoid(x), x tanh(x) and x * y of two branches."""
    g = torch.Generator().manual_seed(seed)
    W1, b1 = torch.randn(h, n, generator=g), torch.randn(h, generator=g) * 0.5
    W2, b2 = torch.randn(h, n, generator=g), torch.randn(h, generator=g) * 0.5
    W3, b3 = torch.randn(m, h, generator=g) / 2, torch.randn(m, generator=g)
    nodes = [_lin("l1", "x", W1, b1), _act("sigmoid", "s", "l1"), Node("mul", ["l1", "s"], "silu", name="silu"),
             _lin("l2", "x", W2, b2), _act("tanh", "t", "l2"), Node("mul", ["l2", "t"], "xt", name="xt"),
             Node("mul", ["silu", "xt"], "prod", name="prod"), _lin("out", "prod", W3, b3)]

    def fn(x):
        a, c = x @ W1.T + b1, x @ W2.T + b2
        return (a * torch.sigmoid(a) * (c * torch.tanh(c))) @ W3.T + b3
    return Graph("x", "out", (n,), nodes), _Torch(fn)


def squeeze_excite(seed: int, size: int = 4, m: int = 3):
    """conv -> relu -> global average -> affine -> sigmoid gate (C, 1, 1) * features (C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    C = 3
    K, c = torch.randn(C, 1, 3, 3, generator=g) / 2, torch.randn(C, generator=g) * 0.3
    scale, shift = torch.randn(C, 1, 1, generator=g) * 2, torch.randn(C, 1, 1, generator=g)
    W, b = torch.randn(m, C * size * size, generator=g) / 4, torch.randn(m, generator=g)
    nodes = [Node("conv", ["x"], "c", {"weight": K, "bias": c}, {"stride": (1, 1), "padding": (1, 1, 1, 1)}, "c"),
             _act("relu", "r", "c"),
             Node("avgpool", ["r"], "p", {}, {"kernel": (size, size), "stride": (size, size), "padding": (0, 0, 0, 0)}, "p"),
             Node("affine", ["p"], "a", {"scale": scale, "shift": shift}, {}, "a"),
             _act("sigmoid", "gate", "a"), Node("mul", ["r", "gate"], "se", name="se"),
             Node("flatten", ["se"], "f", {}, {}, "f"), _lin("out", "f", W, b)]

    def fn(x):
        r = torch.relu(torch.nn.functional.conv2d(x, K, c, padding=1))
        gate = torch.sigmoid(r.mean(dim=(2, 3), keepdim=True) * scale + shift)
        return (r * gate).reshape(x.shape[0], -1) @ W.T + b
    return Graph("x", "out", (1, size, size), nodes), _Torch(fn)


def linear_ops(seed: int, m: int = 3):
    """pad (reflect, constant 0.3), conv_transpose, resize (nearest, bilinear), slice, reduce: the
    linear ops bounded through their transposes, between ReLUs."""
    g = torch.Generator().manual_seed(seed)
    K1, c1 = torch.randn(2, 1, 3, 3, generator=g) / 2, torch.randn(2, generator=g) * 0.3
    KT, cT = torch.randn(2, 3, 3, 3, generator=g) / 2, torch.randn(3, generator=g) * 0.3
    nodes = [Node("conv", ["x"], "c1", {"weight": K1, "bias": c1}, {"stride": (1, 1), "padding": (0, 0, 0, 0)}, "c1"),
             _act("relu", "r1", "c1"),
             Node("pad", ["r1"], "p1", {}, {"padding": (1, 1, 1, 1), "value": 0.0, "mode": "reflect"}, "p1"),
             Node("conv_transpose", ["p1"], "ct", {"weight": KT, "bias": cT},
                  {"stride": (2, 2), "padding": (1, 1, 0, 1), "output_padding": (1, 0), "dilation": (1, 1), "groups": 1}, "ct"),
             _act("relu", "r2", "ct"),
             Node("resize", ["r2"], "up", {}, {"size": (12, 11), "mode": "linear", "align_corners": False}, "up"),
             Node("pad", ["up"], "p2", {}, {"padding": (0, 2, 1, 0), "value": 0.3, "mode": "constant"}, "p2"),
             Node("slice", ["p2"], "sl", {}, {"axes": [2, 3], "starts": [1, 0], "ends": [11, 12], "steps": [2, 3]}, "sl"),
             Node("resize", ["sl"], "nn", {}, {"size": (10, 8), "mode": "nearest", "align_corners": False}, "nn"),
             Node("reduce_mean", ["nn"], "rm", {}, {"axes": [3], "keepdims": True}, "rm"),
             Node("reduce_sum", ["rm"], "rs", {}, {"axes": [1], "keepdims": False}, "rs"),
             Node("flatten", ["rs"], "f", {}, {}, "f")]
    W, b = torch.randn(m, 10, generator=g) / 3, torch.randn(m, generator=g)
    nodes.append(_lin("out", "f", W, b))
    F = torch.nn.functional

    def fn(x):
        y = F.pad(torch.relu(F.conv2d(x, K1, c1)), (1, 1, 1, 1), mode="reflect")
        y = F.conv_transpose2d(y, KT, None, stride=2)
        y = F.pad(y, (0, 0, 0, 1))[:, :, 1:, 1:-1] + cT.reshape(1, -1, 1, 1)  # output_padding (1, 0), crop (1, 1, 0, 1)
        y = F.interpolate(torch.relu(y), size=(12, 11), mode="bilinear", align_corners=False)
        y = F.pad(y, (2, 0, 0, 1), value=0.3)[:, :, 1:11:2, 0:12:3]
        y = F.interpolate(y, size=(10, 8), mode="nearest").mean(dim=3, keepdim=True).sum(dim=1)
        return y.reshape(x.shape[0], -1) @ W.T + b
    return Graph("x", "out", (1, 5, 5), nodes), _Torch(fn)


def _zoo():
    out = []
    for seed in range(4):
        out.append(("mlp-relu", *mlp(seed, 3, [10, 8], 3, ["relu"])))
        out.append(("mlp-mixed", *mlp(100 + seed, 4, [9, 7, 6], 3, ["tanh", "leaky_relu", "sigmoid"])))
    lipschitz = sorted(ACTIVATIONS)
    for i in range(0, len(lipschitz), 3):
        out.append(("mlp-" + "-".join(lipschitz[i:i + 3]), *mlp(200 + i, 4, [9, 7, 6], 3, lipschitz[i:i + 3])))
    out.append(("gated", *gated(5)))
    out.append(("gated", *gated(6)))
    out.append(("squeeze-excite", *squeeze_excite(9)))
    out.append(("linear-ops", *linear_ops(10)))
    out.append(("linear-ops", *linear_ops(11)))
    out.append(("residual", *residual(7)))
    out.append(("residual", *residual(8)))
    out.append(("cnn", *cnn(3)))
    out.append(("cnn", *cnn(4, channels=1, size=5)))
    return out


ZOO = _zoo()


def _samples(x0, radius, norm, lo, hi, count, gen):
    """Points of B_p(x0, r) ∩ [lo, hi]: interior, surface and vertices, projected into the set."""
    n = x0.numel()
    directions = torch.randn(count, n, generator=gen, dtype=torch.float64)
    if norm == "inf":
        surface = directions.sign() * radius
        surface[: count // 2] *= torch.rand(count // 2, n, generator=gen, dtype=torch.float64) ** 0.2
    else:
        order = 2.0 if norm == "2" else 1.0
        if norm == "1":
            directions = directions * torch.rand(count, n, generator=gen, dtype=torch.float64) ** 3
        surface = directions / torch.linalg.vector_norm(directions, ord=order, dim=1, keepdim=True) * radius
        surface[: count // 3] *= torch.rand(count // 3, 1, generator=gen, dtype=torch.float64)
        if norm == "1":
            idx = torch.randint(0, n, (min(count, 2 * n),), generator=gen)
            vertices = torch.zeros(idx.numel(), n, dtype=torch.float64)
            vertices[torch.arange(idx.numel()), idx] = radius * torch.where(torch.arange(idx.numel()) % 2 == 0, 1.0, -1.0).double()
            surface = torch.cat([surface, vertices])
    return project(x0 + surface, x0, radius, norm, lo, hi)


def _ball_bounds(engine, x0, radius, norm, lo, hi, method):
    m = engine.n_outputs
    eye = torch.eye(m, dtype=torch.float64)
    rows = SpecRows(torch.cat([eye, -eye]), torch.zeros(2 * m, dtype=torch.float64), torch.arange(2 * m), 2 * m, True)
    inset = InputRegion.ball(x0, torch.tensor([radius], dtype=torch.float64), norm, lo, hi)
    lb = rows_bound(engine, rows, inset, method, alpha_iterations=8)
    return lb[0, :m], -lb[0, m:]


@pytest.mark.parametrize("index", range(len(ZOO)))
def test_graph_matches_torch_module_and_bounds_contain_samples(index):
    name, graph, module = ZOO[index]
    gen = torch.Generator().manual_seed(index)
    shape = graph.input_shape
    n = graph.n_inputs
    x = torch.randn(64, *shape, generator=gen)
    assert torch.allclose(GraphModule(graph)(x), module(x).reshape(64, -1), atol=1e-5), name
    engine = BoundEngine(graph)
    lo = -torch.ones(n, dtype=torch.float64)
    hi = torch.ones(n, dtype=torch.float64) * 0.7
    run = GraphModule(graph.to("cpu", torch.float64))
    for norm in ("inf", "2", "1"):
        x0 = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
        radius = float(torch.rand(1, generator=gen)) * (0.6 if norm == "inf" else 1.5)
        pts = _samples(x0, radius, norm, lo, hi, 3000, gen)
        assert bool((distance(pts, x0, norm) <= radius + 1e-9).all())
        out = run(pts.reshape(-1, *shape))
        previous = None
        for method in METHODS:
            lb, ub = _ball_bounds(engine, x0, radius, norm, lo, hi, method)
            assert bool((out >= lb - 1e-7).all()), (name, norm, method, (lb - out.min(0).values).max())
            assert bool((out <= ub + 1e-7).all()), (name, norm, method, (out.max(0).values - ub).max())
            width = float((ub - lb).sum())
            if previous is not None and method == "crown":
                assert width <= previous + 1e-6  # CROWN is intersected with IBP: never looser
            previous = width


@pytest.mark.parametrize("index", range(len(ZOO)))
def test_certified_radius_never_exceeds_a_violation(index):
    name, graph, _ = ZOO[index]
    gen = torch.Generator().manual_seed(1000 + index)
    n = graph.n_inputs
    run = GraphModule(graph.to("cpu", torch.float64))
    domain = Domain.scalar(-1.0, 1.0, n)
    x0 = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5)
    z0 = run(x0.reshape(1, *graph.input_shape))[0]
    bound = Robustness().bind(z0)
    for norm in ("inf", "2", "1"):
        max_radius = 0.8 if norm == "inf" else 2.0
        cert = certify_radius(graph, bound.spec(), x0, norm, max_radius, domain,
                              config=CertifyConfig(method="alpha-crown", time_budget_s=5, alpha_iterations=8))
        assert cert.radius_lower is not None and 0 <= cert.radius_lower <= max_radius
        pts = _samples(x0, max_radius, norm, domain.lower, domain.upper, 4000, gen)
        bad = bound.violated(run(pts.reshape(-1, *graph.input_shape)))
        if bool(bad.any()):
            closest = float(distance(pts[bad], x0, norm).min())
            assert cert.radius_lower <= closest + 1e-9, (name, norm, cert, closest)
        else:
            assert cert.radius_lower <= max_radius


# ----------------------------------------------------------------------------- exact MILP radius

def _exact_radius_milp(weights, x0, lo, hi, label, norm, max_radius):
    """Exact max safe radius (L-inf or L1) of a ReLU MLP by MILP: min t s.t. some z_i >= z_label."""
    n = x0.size
    box_lo, box_hi = np.maximum(lo, x0 - max_radius), np.minimum(hi, x0 + max_radius)
    # IBP bounds of every pre-activation over the box (big-M constants)
    pre_bounds, l_act, u_act = [], box_lo, box_hi
    for W, b in weights[:-1]:
        mid, rad = (l_act + u_act) / 2, (u_act - l_act) / 2
        pl, pu = W @ mid + b - np.abs(W) @ rad, W @ mid + b + np.abs(W) @ rad
        pre_bounds.append((pl, pu))
        l_act, u_act = np.maximum(pl, 0), np.maximum(pu, 0)
    best = max_radius
    m = weights[-1][0].shape[0]
    for target in range(m):
        if target == label:
            continue
        # variables: x (n), t, [d (n) for L1], per layer: a (k), delta (k)
        names = {"x": (0, n)}
        cursor = n
        names["t"] = (cursor, cursor + 1); cursor += 1
        if norm == "1":
            names["d"] = (cursor, cursor + n); cursor += n
        layer_vars = []
        for W, _ in weights[:-1]:
            k = W.shape[0]
            layer_vars.append(((cursor, cursor + k), (cursor + k, cursor + 2 * k)))
            cursor += 2 * k
        N = cursor
        rows, lbs, ubs = [], [], []

        def add(coef, lb, ub):
            rows.append(coef); lbs.append(lb); ubs.append(ub)
        xs, t = names["x"][0], names["t"][0]
        for i in range(n):
            if norm == "inf":
                c = np.zeros(N); c[xs + i] = 1; c[t] = -1; add(c, -np.inf, x0[i])
                c = np.zeros(N); c[xs + i] = 1; c[t] = 1; add(c, x0[i], np.inf)
            else:
                ds = names["d"][0]
                c = np.zeros(N); c[ds + i] = 1; c[xs + i] = -1; add(c, -x0[i], np.inf)
                c = np.zeros(N); c[ds + i] = 1; c[xs + i] = 1; add(c, x0[i], np.inf)
        if norm == "1":
            c = np.zeros(N); c[names["d"][0]:names["d"][1]] = 1; c[t] = -1; add(c, -np.inf, 0)
        prev = (xs, xs + n)
        for (W, b), (pl, pu), ((a0, a1), (d0, d1)) in zip(weights[:-1], pre_bounds, layer_vars):
            for j in range(W.shape[0]):
                pre = np.zeros(N); pre[prev[0]:prev[1]] = W[j]
                a = a0 + j; dl = d0 + j
                c = -pre.copy(); c[a] += 1; add(c, b[j], np.inf)  # a >= pre
                c = -pre.copy(); c[a] += 1; c[dl] += -pl[j]; add(c, -np.inf, b[j] - pl[j])  # a <= pre - l(1-δ)
                c = np.zeros(N); c[a] = 1; c[dl] = -max(pu[j], 0); add(c, -np.inf, 0)  # a <= u δ
            prev = (a0, a1)
        Wl, bl = weights[-1]
        c = np.zeros(N); c[prev[0]:prev[1]] = Wl[target] - Wl[label]; add(c, bl[label] - bl[target], np.inf)
        lower = np.zeros(N); upper = np.full(N, np.inf)
        lower[xs:xs + n], upper[xs:xs + n] = box_lo, box_hi
        integrality = np.zeros(N)
        for (W, _), (pl, pu), ((a0, a1), (d0, d1)) in zip(weights[:-1], pre_bounds, layer_vars):
            upper[a0:a1] = np.maximum(pu, 0)
            upper[d0:d1] = 1
            integrality[d0:d1] = 1
            lower[d0:d1] = np.where(pl >= 0, 1, 0)
            upper[d0:d1] = np.where(pu <= 0, 0, 1)
        cost = np.zeros(N); cost[t] = 1
        res = milp(cost, constraints=LinearConstraint(np.array(rows), lbs, ubs), integrality=integrality,
                   bounds=Bounds(lower, upper), options={"mip_rel_gap": 1e-9})
        if res.status == 0:
            best = min(best, float(res.x[t]))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_certified_radius_below_exact_milp_radius(seed):
    graph, _ = mlp(seed, 3, [8, 8], 3, ["relu"])
    weights = [(n.params["weight"].double().numpy(), n.params["bias"].double().numpy())
               for n in graph.nodes if n.op == "linear"]
    gen = torch.Generator().manual_seed(seed)
    run = GraphModule(graph.to("cpu", torch.float64))
    domain = Domain.scalar(-1.0, 1.0, 3)
    x0 = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5)
    z0 = run(x0[None])[0]
    bound = Robustness().bind(z0)
    label = bound.decision
    for norm, max_radius in (("inf", 1.0), ("1", 2.5)):
        exact = _exact_radius_milp(weights, x0.numpy(), -np.ones(3), np.ones(3), label, norm, max_radius)
        gaps = {}
        for method in ("ibp", "crown", "alpha-crown", "bab", "bab-relu"):
            # bab on 3 inputs splits the input; bab-relu forces ReLU splitting (with beta)
            config = CertifyConfig(method=method.replace("-relu", ""), time_budget_s=1.0, alpha_iterations=10,
                                   input_split_max_dim=0 if method == "bab-relu" else 8)
            cert = certify_radius(graph, bound.spec(), x0, norm, max_radius, domain, config=config)
            assert cert.radius_lower <= exact * (1 + 1e-7) + 1e-9, (seed, norm, method, cert, exact)
            gaps[method] = (cert.radius_lower, exact)
        print(f"seed {seed} L{norm}: exact {exact:.5f} " + " ".join(
            f"{k}={v[0]:.5f}" for k, v in gaps.items()))
        # the complete-ish method gets close to the exact radius on these tiny nets
        best = max(v[0] for v in gaps.values())
        assert best >= 0.4 * exact, (seed, norm, gaps)
        assert gaps["crown"][0] >= gaps["ibp"][0] - 1e-12  # the ladder keeps the best radius so far


def test_relu_and_input_splitting_never_verify_a_box_with_a_violation():
    """Branch and bound (with beta multipliers) on boxes around the decision boundary."""
    outcomes = {"verified": 0, "falsified": 0, "unknown": 0}
    for seed in range(24):
        graph, _ = mlp(500 + seed, 4, [12, 12], 3, ["relu"])
        engine = BoundEngine(graph)
        run = GraphModule(graph.to("cpu", torch.float64))
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.rand(4, generator=gen, dtype=torch.float64) - 0.5
        bound = Robustness().bind(run(x0[None])[0])
        rows = SpecRows.from_spec(bound.spec(), engine)
        half = 0.05 + 0.4 * float(torch.rand(1, generator=gen))
        lo, hi = (x0 - half)[None], (x0 + half)[None]
        pts = lo + (hi - lo) * torch.rand(4000, 4, generator=gen, dtype=torch.float64)
        violated = bool(bound.violated(run(pts)).any())
        # relu_split with iterations=0 recomputes every sub-domain's bounds (the path for rows on
        # probabilities)
        recompute = functools.partial(relu_split, iterations=0)
        for name, search in (("relu_split", relu_split), ("relu_split recompute", recompute), ("input_split", input_split)):
            verdict = search(engine, rows, InputRegion.box(lo, hi), Budget(work=None, seconds=0.4))
            outcomes[verdict] += 1
            if violated:
                assert verdict != "verified", (seed, name)
    print("branch and bound outcomes:", outcomes)
    assert outcomes["verified"] > 0 and outcomes["falsified"] + outcomes["unknown"] > 0


@pytest.mark.parametrize("index", [i for i, (name, _, _) in enumerate(ZOO) if name == "cnn"])
def test_dense_and_transposed_convolution_back_substitution_agree(index, monkeypatch):
    """Small conv / avgpool nodes back-substitute through a dense matrix, large ones through
    autograd's transposed convolution: both are the exact transpose, so the bounds agree."""
    import saferisk.bounds.engine as engine_module

    _, graph, _ = ZOO[index]
    dense = BoundEngine(graph)
    assert {n.op for n in dense.nodes if n.output in dense.dense} == {"conv", "avgpool"}
    monkeypatch.setattr(engine_module, "DENSE_MAX_ENTRIES", 0)
    transposed = BoundEngine(graph)
    assert not transposed.dense
    n = graph.n_inputs
    lo, hi = -torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    x0 = torch.linspace(-0.5, 0.5, n, dtype=torch.float64)
    a = _ball_bounds(dense, x0, 0.3, "inf", lo, hi, "crown")
    b = _ball_bounds(transposed, x0, 0.3, "inf", lo, hi, "crown")
    assert torch.allclose(a[0], b[0], atol=1e-9) and torch.allclose(a[1], b[1], atol=1e-9)
    # alpha-CROWN's Adam steps (normalised gradients) amplify rounding-level differences of the
    # two products: the optimised bounds agree to a fraction of the width, not bit for bit
    width = float((a[1] - a[0]).mean())
    a_opt = _ball_bounds(dense, x0, 0.3, "inf", lo, hi, "alpha-crown")
    b_opt = _ball_bounds(transposed, x0, 0.3, "inf", lo, hi, "alpha-crown")
    assert float((a_opt[0] - b_opt[0]).abs().max()) < 1e-2 * width
    assert float((a_opt[1] - b_opt[1]).abs().max()) < 1e-2 * width


FORWARD_ZOO = [i for i, (name, graph, _) in enumerate(ZOO) if forward_supported(BoundEngine(graph))]


def test_forward_bounds_cover_residual_convolutional_and_linear_op_graphs():
    assert {ZOO[i][0] for i in FORWARD_ZOO} >= {"mlp-relu", "mlp-mixed", "residual", "linear-ops"}


@pytest.mark.parametrize("index", FORWARD_ZOO)
def test_forward_intermediate_bounds_contain_samples_and_lie_inside_ibp(index, monkeypatch):
    """Forward linear bounds (bounds/forward.py, the intermediate bounds of large networks):
    every sampled pre-activation and output lies inside them, and they never exceed IBP's."""
    name, graph, _ = ZOO[index]
    gen = torch.Generator().manual_seed(100 + index)
    engine = BoundEngine(graph)
    engine.forward_min_neurons, engine.memory_bytes = -1, 1 << 30
    monkeypatch.setattr(forward, "FORWARD_MIN_ENTRIES", 0)  # used on every network size
    assert engine.forward_is_cheaper()
    n, shape = graph.n_inputs, graph.input_shape
    lo, hi = -torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64) * 0.7
    f64 = graph.to("cpu", torch.float64)
    for norm in ("inf", "2", "1"):
        x0 = lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
        radius = float(torch.rand(1, generator=gen)) * (0.6 if norm == "inf" else 1.5)
        inset = InputRegion.ball(x0, torch.tensor([radius, radius / 4], dtype=torch.float64), norm, lo, hi)
        ibp = engine.ibp(inset)
        bounds = engine.intermediate_bounds(inset, "crown", ibp=ibp)
        pts = _samples(x0, radius / 4, norm, lo, hi, 3000, gen)  # the second (smaller) set of the batch
        values = _node_values(f64, pts.reshape(-1, *shape))
        assert set(engine.pre_nodes) <= set(bounds)
        for node in engine.pre_nodes:
            low, high = bounds[node][0][1], bounds[node][1][1]
            v = values[node]
            assert bool((v >= low - 1e-7).all() and (v <= high + 1e-7).all()), (name, norm, node)
            assert bool((low >= ibp[node][0][1] - 1e-12).all() and (high <= ibp[node][1][1] + 1e-12).all())
        out = values[graph.output_name].reshape(len(pts), -1)
        lb, ub = _ball_bounds(engine, x0, radius / 4, norm, lo, hi, "crown")
        assert bool((out >= lb - 1e-7).all() and (out <= ub + 1e-7).all()), (name, norm)


def _node_values(graph, x):
    """Every node's value at the inputs x (B, *shape), by name."""
    values = {graph.input_name: x}
    for node in graph.nodes:
        if node.op == "constant":
            value = node.params["value"].to(x.dtype)
            values[node.output] = value.expand((x.shape[0],) + tuple(value.shape))
        else:
            values[node.output] = run_node(node, [values[i] for i in node.inputs])
    return values


@pytest.mark.parametrize("seed", range(8))
def test_linear_region_radius_is_below_the_exact_milp_radius(seed, monkeypatch):
    """The affine-piece certificate of large networks (forward.linear_region_radius), forced on
    small ReLU MLPs (crown_max_neurons=1), never exceeds the exact radius; the search that starts
    from it stays sound and gets close to the exact radius."""
    from saferisk.bounds.forward import linear_region_radius

    graph, _ = mlp(40 + seed, 3, [8, 8], 3, ["relu"])
    weights = [(n.params["weight"].double().numpy(), n.params["bias"].double().numpy())
               for n in graph.nodes if n.op == "linear"]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(3, generator=gen, dtype=torch.float64) - 0.5
    bound = Robustness().bind(GraphModule(graph.to("cpu", torch.float64))(x0[None])[0])
    engine = BoundEngine(graph)
    rows = SpecRows.from_spec(bound.spec(), engine)
    for norm, max_radius in (("inf", 1.0), ("2", 1.8), ("1", 2.5)):
        exact = _exact_radius_milp(weights, x0.numpy(), -np.ones(3), np.ones(3), bound.decision, norm, max_radius) \
            if norm != "2" else None
        piece = linear_region_radius(engine, rows, x0, norm, None)
        assert piece > 0, (seed, norm)
        pts = _samples(x0, piece, norm, -torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                       4000, gen)
        out = GraphModule(graph.to("cpu", torch.float64))(pts)
        assert bool((out.argmax(1) == bound.decision).all()), (seed, norm, piece)
        if exact is not None:
            assert piece <= exact * (1 + 1e-7) + 1e-9, (seed, norm, piece, exact)
        monkeypatch.setattr(forward, "FORWARD_MIN_ENTRIES", 0)
        config = CertifyConfig(method="crown", crown_max_neurons=1, work_budget=40)
        cert = certify_radius(graph, bound.spec(), x0, norm, max_radius, Domain.scalar(-1.0, 1.0, 3), config=config)
        assert cert.radius_lower >= piece * (1 - 1e-6) and (exact is None or cert.radius_lower <= exact * (1 + 1e-7) + 1e-9)
