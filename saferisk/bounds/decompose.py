"""The bounds-only rewrite of composite ops into primitive nodes (done once per BoundEngine).

Every rewritten node keeps the user's node label (`name`), so a reason still names the user's
node; the last node of a rewrite keeps its output name. Per-sample shapes (no batch), axes
batched (>= 1) as in `saferisk.models.graph`:

- matmul x (..., n, k) @ y (..., k, m), same rank >= 2: x -> reshape (..., n, k, 1),
  y -> reshape (..., 1, k, m), mul (broadcast, McCormick planes) -> reduce_sum over k.
- softmax over an axis of size n (moved last by a transpose, and back):
  softmax(x)_i = 1 / sum_j exp(x_j - x_i): d = linear (n * n rows e_j - e_i, exact) -> reshape
  (..., n, n) -> exp -> reduce_sum over j -> reciprocal (floor 1: the term j = i is e^0 = 1).
  Tighter than exp(x_i) / sum_j exp(x_j) (no product of correlated terms; its IBP is the
  interval of spec.softmax_interval) and no exponent of an unshifted logit.
- pow x ** 2 -> square (other exponents: unsupported, the reason names the node).
- instancenorm x (C, *spatial) -> reshape (C, S) -> layernorm over S -> reshape back ->
  affine (per-channel scale, bias): GroupNorm as torch exports it is this between two reshapes.
- reduce_max over axes -> the axes flattened last, then pairwise maxima max(a, b) = b + relu(a - b)
  (exact; the relu relaxed; depth log2 of the count, at most MAX_REDUCED_ENTRIES); reduce_min = -max(-x).
- layernorm over axes axis.. (flattened to D = their product): c = x - mean(x) (linear
  I - 11^T / D), v = reduce_mean(square(c)), r = rsqrt(v; epsilon) (v >= 0), y = mul(c, r) ->
  reshape back -> affine(scale, bias). The mul carries attrs bound = sqrt(D - 1), which its IBP
  applies: |c_i| r <= |c_i| / sqrt(v) <= sqrt(D - 1), since sum_j c_j = 0 gives
  D v >= c_i^2 + (sum_{j != i} c_j)^2 / (D - 1) = c_i^2 D / (D - 1).
"""

from __future__ import annotations

import math

import torch

from saferisk.bounds.ops import COMPOSITE_OPS, UnsupportedGraph, run_node
from saferisk.models.graph import Node

MAX_REDUCED_ENTRIES = 1024  # reduce_max / reduce_min: 4 nodes per entry in the rewrite


class _Rewriter:
    """Emits the primitive nodes of one graph, with fresh output names, tracking their shapes."""

    def __init__(self, nodes: list[Node], shapes: dict[str, tuple[int, ...]], device: torch.device, dtype: torch.dtype):
        self.shapes = dict(shapes)
        self.device, self.dtype = device, dtype
        self.constants = {n.output: n.params["value"] for n in nodes if n.op == "constant"}
        self.out: list[Node] = []

    def emit(self, user: Node, op: str, inputs: list[str], params=None, attrs=None, output: str | None = None) -> str:
        """Append a node labelled like `user`; returns its output (a fresh name unless given)."""
        if output is None:
            output, i = f"{user.output}::{op}", 1
            while output in self.shapes:
                output, i = f"{user.output}::{op}{i}", i + 1
        node = Node(op, inputs, output, dict(params or {}), dict(attrs or {}), user.name or user.output)
        if op == "constant":
            self.constants[output] = node.params["value"]
            self.shapes[output] = tuple(node.params["value"].shape)
        else:
            zeros = [torch.zeros(((1,) if i not in self.constants else ()) + self.shapes[i], dtype=self.dtype,
                                 device=self.device) for i in inputs]  # (constants have no batch dimension)
            self.shapes[output] = tuple(run_node(node, zeros).shape[1:])
        self.out.append(node)
        return output

    def reshape(self, user: Node, name: str, shape: tuple[int, ...], output: str | None = None) -> str:
        """`name` reshaped to the per-sample `shape` (a constant: a reshaped constant)."""
        if self.shapes[name] == shape:
            return name if output is None else self.emit(user, "identity", [name], output=output)
        if name in self.constants and output is None:
            return self.emit(user, "constant", [], {"value": self.constants[name].reshape(shape)})
        return self.emit(user, "reshape", [name], attrs={"shape": list(shape)}, output=output)

    def transpose(self, user: Node, name: str, perm: list[int], output: str | None = None) -> str:
        if perm == sorted(perm):
            return name if output is None else self.emit(user, "identity", [name], output=output)
        return self.emit(user, "transpose", [name], attrs={"perm": perm}, output=output)

    def matmul(self, node: Node) -> None:
        x, y = node.inputs
        sx, sy = self.shapes[x], self.shapes[y]
        if len(sx) != len(sy) or len(sx) < 2 or sx[-1] != sy[-2]:
            raise UnsupportedGraph(f"unsupported operation 'matmul' in node '{node.name or node.output}' "
                                   f"(inputs of per-sample shapes {sx} and {sy})")
        product = self.emit(node, "mul", [self.reshape(node, x, sx + (1,)), self.reshape(node, y, sy[:-2] + (1,) + sy[-2:])])
        self.emit(node, "reduce_sum", [product], attrs={"axes": [len(sx)], "keepdims": False}, output=node.output)

    def pow(self, node: Node) -> None:
        if float(node.attrs["exponent"]) != 2.0:
            raise UnsupportedGraph(f"unsupported operation 'pow' in node '{node.name or node.output}' "
                                   f"(exponent {node.attrs['exponent']}; only squares are bounded)")
        self.emit(node, "square", [node.inputs[0]], output=node.output)

    def instancenorm(self, node: Node) -> None:
        shape = self.shapes[node.inputs[0]]
        channels = shape[0]
        flat = self.reshape(node, node.inputs[0], (channels, math.prod(shape[1:])))
        normed = f"{node.output}::normed"
        self.layernorm(Node("layernorm", [flat], normed, {"scale": None, "bias": None},
                            {"axis": 2, "epsilon": float(node.attrs.get("epsilon", 1e-5))}, node.name or node.output))
        per_channel = (channels,) + (1,) * (len(shape) - 1)
        scale, bias = (node.params.get(k) for k in ("scale", "bias"))
        self.emit(node, "affine", [self.reshape(node, normed, shape)],
                  {"scale": None if scale is None else scale.reshape(per_channel).to(self.device, self.dtype),
                   "shift": None if bias is None else bias.reshape(per_channel).to(self.device, self.dtype)},
                  output=node.output)

    def reduce_max(self, node: Node, negate: bool = False) -> None:
        shape = self.shapes[node.inputs[0]]
        axes = sorted(int(a) - 1 for a in node.attrs["axes"])
        keep = [i for i in range(len(shape)) if i not in axes]
        count = math.prod(shape[i] for i in axes)
        if count > MAX_REDUCED_ENTRIES:
            raise UnsupportedGraph(f"unsupported operation '{node.op}' in node '{node.name or node.output}' "
                                   f"(over {count} entries; at most {MAX_REDUCED_ENTRIES} are bounded)")
        minus_one = torch.tensor(-1.0, dtype=self.dtype, device=self.device)
        source = node.inputs[0]
        if negate:
            source = self.emit(node, "affine", [source], {"scale": minus_one, "shift": None})
        moved = self.transpose(node, source, keep + axes)  # the reduced axes last, flattened
        rows = self.reshape(node, moved, tuple(shape[i] for i in keep) + (count,))
        level = [self.emit(node, "slice", [rows], attrs={"axes": [len(keep) + 1], "starts": [k], "ends": [k + 1],
                                                          "steps": [1]}) for k in range(count)]
        while len(level) > 1:  # pairwise: max(a, b) = b + relu(a - b), depth log2(count)
            paired = []
            for a, b in zip(level[0::2], level[1::2]):
                difference = self.emit(node, "add", [a, self.emit(node, "affine", [b], {"scale": minus_one, "shift": None})])
                paired.append(self.emit(node, "add", [b, self.emit(node, "relu", [difference])]))
            level = paired + level[len(paired) * 2:]
        best = level[0]
        if negate:
            best = self.emit(node, "affine", [best], {"scale": minus_one, "shift": None})
        keepdims = bool(node.attrs.get("keepdims", True))
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keepdims else tuple(shape[i] for i in keep)
        self.reshape(node, best, out_shape, output=node.output)

    def reduce_min(self, node: Node) -> None:
        self.reduce_max(node, negate=True)

    def softmax(self, node: Node) -> None:
        shape = self.shapes[node.inputs[0]]
        rank = len(shape)
        axis = int(node.attrs.get("axis", 1))
        axis = axis + rank + 1 if axis < 0 else axis
        perm = [i for i in range(rank) if i != axis - 1] + [axis - 1]  # the softmax axis last
        n = shape[axis - 1]
        eye = torch.eye(n, dtype=self.dtype, device=self.device)
        weight = (eye.unsqueeze(0) - eye.unsqueeze(1)).reshape(n * n, n)  # row (i, j): e_j - e_i
        diffs = self.emit(node, "linear", [self.transpose(node, node.inputs[0], perm)], {"weight": weight, "bias": None})
        grid = self.reshape(node, diffs, tuple(shape[i] for i in perm[:-1]) + (n, n))
        sums = self.emit(node, "reduce_sum", [self.emit(node, "exp", [grid])], attrs={"axes": [rank + 1], "keepdims": False})
        probs = self.emit(node, "reciprocal", [sums], attrs={"floor": 1.0})
        self.transpose(node, probs, [perm.index(i) for i in range(rank)], output=node.output)

    def layernorm(self, node: Node) -> None:
        shape = self.shapes[node.inputs[0]]
        axis = int(node.attrs["axis"])
        lead, size = shape[:axis - 1], math.prod(shape[axis - 1:])
        scale, bias = node.params.get("scale"), node.params.get("bias")
        centre = torch.eye(size, dtype=self.dtype, device=self.device) - 1.0 / size  # x - mean(x)
        flat = self.reshape(node, node.inputs[0], lead + (size,))
        centred = self.emit(node, "linear", [flat], {"weight": centre, "bias": None})
        variance = self.emit(node, "reduce_mean", [self.emit(node, "square", [centred])],
                             attrs={"axes": [len(lead) + 1], "keepdims": True})
        inverse = self.emit(node, "rsqrt", [variance], attrs={"epsilon": float(node.attrs.get("epsilon", 1e-5))})
        normed = self.emit(node, "mul", [centred, inverse], attrs={"bound": math.sqrt(size - 1)})
        if scale is None and bias is None:
            self.reshape(node, normed, shape, output=node.output)
        elif self.shapes[self.emit(node, "affine", [self.reshape(node, normed, shape)], {"scale": scale, "shift": bias},
                                   output=node.output)] != shape:
            raise UnsupportedGraph(f"unsupported operation 'layernorm' in node '{node.name or node.output}' "
                                   "(its scale or bias broadcasting changes the shape)")


def decompose(nodes: list[Node], shapes: dict[str, tuple[int, ...]], device: torch.device,
              dtype: torch.dtype) -> list[Node]:
    """The nodes with every COMPOSITE_OPS node replaced by its primitive nodes (see above);
    `shapes`: every value's per-sample shape; new parameters get `device` and `dtype`."""
    rewriter = _Rewriter(nodes, shapes, device, dtype)
    for node in nodes:
        if node.op in COMPOSITE_OPS:
            getattr(rewriter, node.op)(node)
        else:
            rewriter.out.append(node)
    return rewriter.out
