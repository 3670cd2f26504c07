"""The operations certified bounds handle, the errors of bound computations, and the linear
relaxation lines of elementwise ops (shared by the backward (engine.py) and forward (forward.py)
bound propagation).

The graph's composite ops (COMPOSITE_OPS: softmax anywhere, layernorm, matmul of two variables)
are rewritten into primitive nodes when an engine is built (decompose.py). That rewrite uses
bounds-internal convex elementwise ops (CONVEX_OPS), evaluated by `run_node` here, not accepted
in a user's graph (their domains are guaranteed by the rewrite) except `exp`, which has none; a
user's `pow` with exponent 2 becomes `square` (the reader's Exp and Pow):

| op         | attrs   | f(x)                  | the rewrite guarantees |
| ---------- | ------- | --------------------- | ---------------------- |
| exp        | -       | e^x                   | -                      |
| reciprocal | floor   | 1 / x                 | x >= floor > 0         |
| rsqrt      | epsilon | 1 / sqrt(x + epsilon) | x >= 0                 |
| square     | -       | x^2                   | -                      |
"""

from __future__ import annotations

import torch

from saferisk.bounds.relax import convex_range, convex_relax, leaky_relu_relax, lipschitz_grid_relax, s_shaped_relax
from saferisk.models import graph
from saferisk.models.activations import ACTIVATIONS
from saferisk.models.graph import Node

# linear maps with an offset f(0) (pad's value, conv_transpose's bias): IBP through |M|, CROWN
# through the exact transpose (autograd) plus coef . f(0)
LINEAR_OPS = {"pad", "slice", "conv_transpose", "resize", "reduce_sum", "reduce_mean"}
AFFINE_OPS = {"linear", "conv", "affine", "flatten", "reshape", "avgpool", "transpose", "identity"} | LINEAR_OPS
LIPSCHITZ_OPS = set(ACTIVATIONS)  # relaxed by lipschitz_grid_relax
CONVEX_OPS = {"exp", "reciprocal", "rsqrt", "square"}  # bounds-internal (see above), relaxed by convex_relax
ELEMENTWISE_OPS = {"relu", "leaky_relu", "tanh", "sigmoid"} | LIPSCHITZ_OPS | CONVEX_OPS
OTHER_OPS = {"add", "concat", "maxpool", "constant", "mul"}
# rewritten into primitive nodes (decompose.py)
COMPOSITE_OPS = {"softmax", "layernorm", "matmul", "pow", "instancenorm", "reduce_max", "reduce_min"}
# in a user's graph: exp is the same function there (no domain to guarantee)
SUPPORTED_OPS = (AFFINE_OPS | ELEMENTWISE_OPS | OTHER_OPS | COMPOSITE_OPS) - (CONVEX_OPS - {"exp"})


class UnsupportedGraph(Exception):
    """The graph has an operation certified bounds cannot handle; str(exc) is the reason."""


class BoundsDeadline(Exception):
    """The certification budget ended inside a bound computation (no bound from this pass)."""


def _activation(node: Node):
    """(f, L) of an activation node: the function of x alone and its Lipschitz constant."""
    activation, attrs = ACTIVATIONS[node.op], dict(node.attrs)
    return (lambda x: activation.fn(x, attrs)), float(activation.lipschitz(attrs))


def run_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """`saferisk.models.graph.run_node` (exp and reciprocal are graph ops too), and the
    bounds-only CONVEX_OPS rsqrt and square."""
    if node.op == "rsqrt":
        return torch.rsqrt(args[0] + float(node.attrs["epsilon"]))
    if node.op == "square":
        return args[0] * args[0]
    return graph.run_node(node, args)


def _convex_argument(node: Node, lower: torch.Tensor, upper: torch.Tensor):
    """(l, u, shift): the interval of y = x + shift that f of a CONVEX_OPS node sees (reciprocal:
    f(y) = 1 / y, rsqrt: f(y) = y^-1/2 with y = x + epsilon), x's lower end raised to the domain
    the rewrite guarantees (reciprocal: x >= floor, rsqrt: x >= 0; sound, no true value is cut)."""
    if node.op not in ("reciprocal", "rsqrt"):
        return lower, upper, 0.0
    floor, shift = (float(node.attrs["floor"]), 0.0) if node.op == "reciprocal" else (0.0, float(node.attrs["epsilon"]))
    low = lower.clamp_min(floor)
    return low + shift, torch.maximum(upper, low) + shift, shift


def convex_interval(node: Node, lower: torch.Tensor, upper: torch.Tensor):
    """IBP of a CONVEX_OPS node: (min, max) of f over [l, u] (its domain applied)."""
    low, high, _ = _convex_argument(node, lower, upper)
    return convex_range(node.op, low, high)


def elementwise_lines(node: Node, lower: torch.Tensor, upper: torch.Tensor):
    """(a_l, b_l, a_u, b_u): lines a_l x + b_l <= f(x) <= a_u x + b_u of an elementwise node on [l, u]
    (CONVEX_OPS: a missing line is slope 0, intercept -inf / +inf, see relax.py)."""
    if node.op in CONVEX_OPS:  # lines in y = x + shift: a y + b = a x + (b + a shift)
        low, high, shift = _convex_argument(node, lower, upper)
        al, bl, au, bu = convex_relax(node.op, low, high)
        return (al, bl + al * shift, au, bu + au * shift) if shift else (al, bl, au, bu)
    if node.op in ("relu", "leaky_relu"):
        return leaky_relu_relax(lower, upper, 0.0 if node.op == "relu" else float(node.attrs.get("alpha", 0.01)))
    if node.op in LIPSCHITZ_OPS:
        return lipschitz_grid_relax(*_activation(node), lower, upper)
    return s_shaped_relax(node.op, lower, upper)
