"""GraphModule's execution plan (`node_function` per node, bound once per graph): the same numbers,
bit for bit, as running every node through `run_node`, values and input gradients; rebuilt when
.to() replaces the graph's tensors."""

from __future__ import annotations

import torch

from saferisk.models.graph import Graph, GraphModule, Node, node_function, run_node


def _graph(dtype: torch.dtype = torch.float32) -> Graph:
    """conv (symmetric padding) -> relu -> conv (asymmetric padding, no bias) -> flatten ->
    linear (bias) -> relu -> linear (no bias), on 2 x 6 x 6 inputs."""
    g = torch.Generator().manual_seed(3)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    nodes = [
        Node("conv", ["x"], "c1", {"weight": r(4, 2, 3, 3), "bias": r(4)}, {"padding": (1, 1, 1, 1)}),
        Node("relu", ["c1"], "r1"),
        Node("conv", ["r1"], "c2", {"weight": r(3, 4, 2, 2), "bias": None}, {"padding": (0, 0, 1, 1), "stride": (2, 2)}),
        Node("flatten", ["c2"], "f"),
        Node("linear", ["f"], "l1", {"weight": r(8, 27), "bias": r(8)}),
        Node("relu", ["l1"], "r2"),
        Node("linear", ["r2"], "out", {"weight": r(5, 8), "bias": None}),
    ]
    return Graph("x", "out", (2, 6, 6), nodes)


def _node_by_node(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    values = {graph.input_name: x}
    for node in graph.nodes:
        values[node.output] = run_node(node, [values[name] for name in node.inputs])
    return values[graph.output_name]


def _with_gradient(forward, x: torch.Tensor, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    z = forward(x)
    (grad,) = torch.autograd.grad(z, x, grad_outputs=cotangent)
    return z.detach(), grad


def test_plan_matches_run_node_bit_for_bit():
    graph = _graph()
    module = GraphModule(graph)
    g = torch.Generator().manual_seed(4)
    for batch in (1, 3, 64):  # (1 row: F.conv2d; more: the im2col kernel, as run_node takes them)
        x = torch.rand(batch, 2, 6, 6, generator=g)
        cotangent = torch.randn(batch, 5, generator=g)
        z_plan, grad_plan = _with_gradient(module, x, cotangent)
        z_nodes, grad_nodes = _with_gradient(lambda t: _node_by_node(graph, t), x, cotangent)
        assert z_plan.shape == (batch, 5)
        assert torch.equal(z_plan, z_nodes) and torch.equal(grad_plan, grad_nodes)


def test_linear_on_more_dimensions_and_without_bias():
    """A linear node on (B, T, C) rows (a transformer's token features) takes F.linear, as run_node."""
    g = torch.Generator().manual_seed(5)
    for bias in (torch.randn(4, generator=g), None):
        node = Node("linear", ["x"], "y", {"weight": torch.randn(4, 6, generator=g), "bias": bias})
        for x in (torch.rand(3, 6, generator=g), torch.rand(2, 5, 6, generator=g)):
            assert torch.equal(node_function(node)([x]), run_node(node, [x]))


def test_plan_follows_to():
    """.to(float64) replaces the graph's tensors: the plan binds the new ones (a stale plan would
    mix float32 weights with float64 rows and fail)."""
    module = GraphModule(_graph())
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(6))
    z32 = module(x)
    module = module.to(torch.float64)
    z64 = module(x.double())
    assert z64.dtype == torch.float64
    assert torch.equal(z64, _node_by_node(module.graph, x.double()))
    assert torch.allclose(z64, z32.double(), rtol=1e-4, atol=1e-5)  # (float32 rounding of ~50-term sums)
