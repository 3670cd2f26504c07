"""Certified bounds of graphs read per sample (tests/real_networks.py): unrolled LSTM / GRU / RNN
cells (per-token Linear over (steps, 1, features), gate slices, products of two bounded
variables) contain every sampled output in L-inf, L2 and L1 balls, for IBP, CROWN and alpha-CROWN;
the certified radius never exceeds the distance of a violation found by sampling."""

from __future__ import annotations

import functools

import pytest
import torch

from saferisk.bounds import BoundEngine, CertifyConfig, certify_radius
from saferisk.data.domain import Domain
from saferisk.models.graph import GraphModule
from saferisk.models.load import module_to_onnx, read_forward
from saferisk.norms import distance
from saferisk.properties import Robustness
from tests.real_networks import build
from tests.unit.bounds.test_bounds_soundness import METHODS, _ball_bounds, _samples

pytest.importorskip("onnxruntime")

RECURRENT = ("lstm", "gru", "rnn", "relu-rnn", "bilstm-2layer")


@functools.cache
def _graph(name: str):
    module, shape, _, _ = build(name)
    forward = read_forward(module_to_onnx(module, shape))
    assert forward.graph is not None, forward.graph_error
    return forward.graph


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_bounds_contain_sampled_outputs(name):
    graph = _graph(name)
    engine = BoundEngine(graph)
    run = GraphModule(graph.to("cpu", torch.float64))
    n = graph.n_inputs
    gen = torch.Generator().manual_seed(7)
    lo, hi = -torch.ones(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    for norm, radius in (("inf", 0.05), ("inf", 0.4), ("2", 0.5), ("1", 1.5)):
        x0 = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * 1.6
        points = _samples(x0, radius, norm, lo, hi, 2000, gen)
        outputs = run(points.reshape(-1, *graph.input_shape))
        previous = None
        for method in METHODS:
            lower, upper = _ball_bounds(engine, x0, radius, norm, lo, hi, method)
            assert bool((outputs >= lower - 1e-7).all()), (name, norm, radius, method)
            assert bool((outputs <= upper + 1e-7).all()), (name, norm, radius, method)
            width = float((upper - lower).sum())
            if method == "crown":
                assert width <= previous + 1e-6  # intersected with IBP: never looser
                assert width < previous or radius > 0.1, (name, norm, "CROWN should tighten small balls")
            previous = width


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_certified_radius_is_below_every_sampled_violation(name):
    graph = _graph(name)
    run = GraphModule(graph.to("cpu", torch.float64))
    n = graph.n_inputs
    gen = torch.Generator().manual_seed(11)
    x0 = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5)
    z0 = run(x0.reshape(1, *graph.input_shape))[0]
    bound = Robustness().bind(z0)
    domain = Domain.scalar(-1.0, 1.0, n)
    cert = certify_radius(graph, bound.spec(), x0, "inf", 2.0, domain, config=CertifyConfig(method="crown"))
    assert cert.radius_lower is not None and cert.radius_lower > 0, cert.reason
    points = x0 + (torch.rand(20000, n, generator=gen, dtype=torch.float64) * 2 - 1) * 2.0
    points = points.clamp(-1.0, 1.0)
    labels = run(points.reshape(-1, *graph.input_shape)).argmax(1)
    violating = points[labels != z0.argmax()]
    assert violating.shape[0] > 0, "fixture: some input within the box changes the class"
    assert cert.radius_lower <= float(distance(violating, x0, "inf").min())
