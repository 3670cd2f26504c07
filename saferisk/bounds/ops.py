"""The operations certified bounds handle, the errors of bound computations, and the linear
relaxation lines of elementwise ops (shared by the backward (engine.py) and forward (forward.py)
bound propagation)."""

from __future__ import annotations

import torch

from saferisk.bounds.relax import leaky_relu_relax, lipschitz_grid_relax, s_shaped_relax
from saferisk.models.activations import ACTIVATIONS
from saferisk.models.graph import Node

# linear maps with an offset f(0) (pad's value, conv_transpose's bias): IBP through |M|, CROWN
# through the exact transpose (autograd) plus coef . f(0)
LINEAR_OPS = {"pad", "slice", "conv_transpose", "resize", "reduce_sum", "reduce_mean"}
AFFINE_OPS = {"linear", "conv", "affine", "flatten", "reshape", "avgpool", "transpose", "identity"} | LINEAR_OPS
LIPSCHITZ_OPS = set(ACTIVATIONS)  # relaxed by lipschitz_grid_relax
ELEMENTWISE_OPS = {"relu", "leaky_relu", "tanh", "sigmoid"} | LIPSCHITZ_OPS
OTHER_OPS = {"add", "concat", "maxpool", "constant", "mul"}
SUPPORTED_OPS = AFFINE_OPS | ELEMENTWISE_OPS | OTHER_OPS


class UnsupportedGraph(Exception):
    """The graph has an operation certified bounds cannot handle; str(exc) is the reason."""


class BoundsDeadline(Exception):
    """The certification budget ended inside a bound computation (no bound from this pass)."""


def _activation(node: Node):
    """(f, L) of an activation node: the function of x alone and its Lipschitz constant."""
    activation, attrs = ACTIVATIONS[node.op], dict(node.attrs)
    return (lambda x: activation.fn(x, attrs)), float(activation.lipschitz(attrs))


def elementwise_lines(node: Node, lower: torch.Tensor, upper: torch.Tensor):
    """(a_l, b_l, a_u, b_u): lines a_l x + b_l <= f(x) <= a_u x + b_u of an elementwise node on [l, u]."""
    if node.op in ("relu", "leaky_relu"):
        return leaky_relu_relax(lower, upper, 0.0 if node.op == "relu" else float(node.attrs.get("alpha", 0.01)))
    if node.op in LIPSCHITZ_OPS:
        return lipschitz_grid_relax(*_activation(node), lower, upper)
    return s_shaped_relax(node.op, lower, upper)
