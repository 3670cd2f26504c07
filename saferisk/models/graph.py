"""saferisk's one internal graph: what the model loader builds and certified bounds walk.

Every source format (ONNX, TorchScript, torch.export, state_dict + factory) ends up as this
graph (via the canonical ONNX artifact and `saferisk.models.onnx_reader`). Nodes use a small,
normalised op set with per-sample semantics; the batch dimension is always dim 0 and never
appears in attributes:

| op           | inputs      | params            | attrs                                      | meaning |
| ------------ | ----------- | ----------------- | ------------------------------------------ | ------- |
| linear       | x (B, k)    | weight (o,k), bias (o) or None | -                             | x @ weight.T + bias |
| conv         | x (B,C,H,W) | weight, bias      | stride, padding (t,l,b,r), dilation, groups | 2-D convolution |
| affine       | x           | scale, shift      | -                                          | x * scale + shift (broadcast; Sub/Add/Mul/Div by constants, BatchNorm, Normalize) |
| relu         | x           | -                 | -                                          | max(x, 0) |
| leaky_relu   | x           | -                 | alpha                                      | x if x>0 else alpha*x |
| tanh, sigmoid| x           | -                 | -                                          | elementwise |
| softmax      | x           | -                 | axis (>=1)                                 | softmax |
| add          | x, y        | -                 | -                                          | x + y (both variable, same shape: residual) |
| flatten      | x           | -                 | -                                          | (B, ...) -> (B, prod) |
| reshape      | x           | -                 | shape (per-sample, no batch)               | (B, ...) -> (B, *shape) |
| maxpool, avgpool | x       | -                 | kernel, stride, padding (t,l,b,r), count_include_pad (avg) | 2-D pooling |
| transpose    | x           | -                 | perm (per-sample axes, 0-based after batch) | permute |
| concat       | x, y, ...   | -                 | axis (>=1)                                 | concatenate |
| identity     | x           | -                 | -                                          | x (Dropout in eval, Identity) |
| constant     | -           | value             | -                                          | a constant tensor (no batch dim) |
| elu, selu, celu, softplus, softsign, erf, gelu, mish, hardsigmoid, hardswish, abs, sin, cos, clip | x | - | see `saferisk.models.activations` | elementwise, L-Lipschitz |

Ops not listed here may be added by the reader for execution only (`extra ops`, in
`EXTRA_OPS`); certified bounds then report them as unsupported, never silently wrong:

| extra op | inputs | attrs            | meaning |
| -------- | ------ | ---------------- | ------- |
| pad      | x (B,C,H,W) | padding (t,l,b,r), value, mode (constant, reflect, edge) | padding of H and W (a zero constant pad is folded into a following Conv) |
| mul      | x, y   | -                | x * y (both variable) |
| matmul   | x (B,...,n,k), y (B,...,k,m) | - | x @ y (both variable, same rank: attention's Q K^T and A V) |
| exp, sqrt, reciprocal | x | -             | e^x, sqrt(x), 1/x (ONNX Exp, Sqrt, Reciprocal; Div of two variables is x * reciprocal(y)) |
| pow      | x      | exponent         | x ** exponent (ONNX Pow with a constant exponent) |
| log_softmax | x   | axis (>=1)       | log(softmax(x)) |
| slice    | x      | axes (>=1), starts, ends, steps (>0), resolved | x[..., start:end:step, ...] on those axes |
| conv_transpose | x (B,C,H,W) | weight (C, O/g, kh, kw), bias; stride, padding (t,l,b,r), output_padding, dilation, groups | ONNX ConvTranspose |
| resize   | x (B,C,H,W) | size (H', W'), mode (nearest, linear), align_corners | ONNX Resize of H and W |
| reduce_sum, reduce_mean, reduce_max, reduce_min | x | axes (>=1), keepdims | reductions over per-sample axes |
| layernorm | x     | scale, bias; axis (>=1), epsilon | ONNX LayerNormalization over axes axis.. |
| instancenorm | x (B,C,...) | scale, bias; epsilon | ONNX InstanceNormalization |

pad, slice, conv_transpose, resize and reduce_sum/reduce_mean are linear (affine with pad's value or
the bias): certified bounds treat them like the affine ops (`saferisk.bounds.engine.LINEAR_OPS`).
mul has McCormick planes; matmul, layernorm and a softmax anywhere are bounded through their
rewrite into primitive nodes (`saferisk.bounds.decompose`).

A `concat` input that is a `constant` node (no batch dim) is broadcast over the batch; an
`avgpool` with asymmetric padding and count_include_pad False averages over the real cells only
(ONNX semantics; still linear in x).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from saferisk.errors import ModelError
from saferisk.models.activations import ACTIVATIONS, run_activation


@dataclass
class Node:
    """One operation: `output = op(*inputs; params, attrs)`."""

    op: str
    inputs: list[str]
    output: str
    params: dict[str, torch.Tensor | None] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Graph:
    """A straight-line DAG in topological order with one input and one output.

    input_shape is per sample (no batch dimension); output is (B, n_outputs).
    """

    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    nodes: list[Node]

    @property
    def n_inputs(self) -> int:
        n = 1
        for d in self.input_shape:
            n *= int(d)
        return n

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Graph":
        """A copy with every parameter on `device` (and `dtype` for floating tensors)."""
        nodes = []
        for node in self.nodes:
            params = {}
            for k, v in node.params.items():
                if v is None:
                    params[k] = None
                elif dtype is not None and v.is_floating_point():
                    params[k] = v.to(device=device, dtype=dtype)
                else:
                    params[k] = v.to(device=device)
            nodes.append(Node(node.op, list(node.inputs), node.output, params, dict(node.attrs), node.name))
        return Graph(self.input_name, self.output_name, tuple(self.input_shape), nodes)


def _pad_input(x: torch.Tensor, padding: tuple[int, int, int, int], value: float) -> torch.Tensor:
    top, left, bottom, right = padding
    if top == bottom and left == right:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


# Below this many multiply-adds per call (`conv_multiply_adds`), a CPU convolution of a batch (2
# rows or more) without groups or dilation runs through ATen's im2col kernel (thnn_conv2d): on such
# tiny convolutions the oneDNN kernel F.conv2d picks costs more than the work, forward and backward
# (on one row it does not). Measured by `benchmarks/bench_conv.py` on an AMD EPYC: the digits CNN's
# layers at batch 4, 35 and 40 us vs 109 and 103 us per forward + input gradient; its 8->16 layer on
# 4x4 at batch 64 (295k multiply-adds) 229 vs 123 us, hence the bound at 131k. Every graph
# execution takes it (witness search, certified bounds, re-checks), not a trace or an ONNX export of
# a GraphModule (torch.onnx has no thnn_conv2d). (thnn_conv2d's weight gradient is wrong for a
# channels_last weight in torch 2.13; the graph's weights are plain contiguous constants and only
# input gradients are taken.)
SMALL_CONV_MACS = 1 << 17
_IM2COL_CONV = getattr(torch.ops.aten, "thnn_conv2d", None)  # (None: a torch without it; F.conv2d throughout)


@functools.lru_cache(maxsize=4096)
def conv_multiply_adds(batch: int, weight_shape: tuple[int, ...], in_size: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> int:
    """batch x output cells x weights (out channels x in channels x kernel cells) of a 2-D convolution."""
    kh, kw = int(weight_shape[2]), int(weight_shape[3])
    out_h = max((int(in_size[0]) + 2 * int(padding[0]) - kh) // int(stride[0]) + 1, 0)
    out_w = max((int(in_size[1]) + 2 * int(padding[1]) - kw) // int(stride[1]) + 1, 0)
    return int(batch) * out_h * out_w * math.prod(int(d) for d in weight_shape)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """F.conv2d, through the im2col kernel for small CPU convolutions of batches (SMALL_CONV_MACS)."""
    if (_IM2COL_CONV is not None and groups == 1 and tuple(dilation) == (1, 1) and x.device.type == "cpu"
            and x.dim() == 4 and x.shape[0] > 1
            and conv_multiply_adds(x.shape[0], weight.shape, x.shape[2:], stride, padding) <= SMALL_CONV_MACS
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()):
        return _IM2COL_CONV(x, weight, list(weight.shape[2:]), bias, list(stride), list(padding))
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _symmetric(padding: tuple[int, int, int, int]) -> tuple[int, int] | None:
    top, left, bottom, right = padding
    return (top, left) if top == bottom and left == right else None


def node_function(node: Node) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """`run_node` for this node as a function of its arguments alone; a linear node with a bias
    binds its transposed weight (the addmm F.linear runs on 2-D inputs, without a transpose
    per call: the same kernel, the same numbers)."""
    if node.op == "linear" and node.params.get("bias") is not None:
        weight, bias = node.params["weight"], node.params["bias"]
        weight_t = weight.t()

        def linear(args: list[torch.Tensor]) -> torch.Tensor:
            x = args[0]
            return torch.addmm(bias, x, weight_t) if x.dim() == 2 else F.linear(x, weight, bias)
        return linear
    if node.op == "conv":
        return _conv_function(node)
    return lambda args: run_node(node, args)


def _conv_function(node: Node) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """A conv node as a function of its arguments: its padding (asymmetric padding as an explicit
    pad), stride, dilation and groups read once, then `conv2d`."""
    a = node.attrs
    pad = tuple(a.get("padding", (0, 0, 0, 0)))
    sym = _symmetric(pad)
    weight, bias, padding = node.params["weight"], node.params.get("bias"), sym if sym is not None else (0, 0)
    stride, dilation, groups = tuple(a.get("stride", (1, 1))), tuple(a.get("dilation", (1, 1))), int(a.get("groups", 1))

    def conv(args: list[torch.Tensor]) -> torch.Tensor:
        x = args[0] if sym is not None else _pad_input(args[0], pad, 0.0)
        return conv2d(x, weight, bias, stride, padding, dilation, groups)
    return conv


def run_node(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """Execute one node on concrete tensors (batch first)."""
    op, p, a = node.op, node.params, node.attrs
    if op == "linear":
        return F.linear(args[0], p["weight"], p.get("bias"))
    if op == "conv":
        return _conv_function(node)(args)
    if op == "affine":
        out = args[0]
        if p.get("scale") is not None:
            out = out * p["scale"]
        if p.get("shift") is not None:
            out = out + p["shift"]
        return out
    if op == "relu":
        return torch.relu(args[0])
    if op == "leaky_relu":
        return F.leaky_relu(args[0], float(a.get("alpha", 0.01)))
    if op == "tanh":
        return torch.tanh(args[0])
    if op == "sigmoid":
        return torch.sigmoid(args[0])
    if op == "softmax":
        return torch.softmax(args[0], dim=int(a.get("axis", 1)))
    if op == "add":
        return args[0] + args[1]
    if op == "flatten":
        return args[0].reshape(args[0].shape[0], -1)
    if op == "reshape":
        return args[0].reshape(args[0].shape[0], *a["shape"])
    if op in ("maxpool", "avgpool"):
        pad = tuple(a.get("padding", (0, 0, 0, 0)))
        sym = _symmetric(pad)
        kernel, stride = tuple(a["kernel"]), tuple(a.get("stride", a["kernel"]))
        if op == "maxpool":
            x = args[0] if sym is not None else _pad_input(args[0], pad, float("-inf"))
            return F.max_pool2d(x, kernel, stride, padding=sym if sym is not None else 0)
        include = bool(a.get("count_include_pad", False))
        if sym is not None:
            return F.avg_pool2d(args[0], kernel, stride, padding=sym, count_include_pad=include)
        summed = F.avg_pool2d(_pad_input(args[0], pad, 0.0), kernel, stride)
        if include:
            return summed
        ones = torch.ones((1, 1, *args[0].shape[2:]), dtype=args[0].dtype, device=args[0].device)
        return summed / F.avg_pool2d(_pad_input(ones, pad, 0.0), kernel, stride)  # mean over real cells
    if op == "transpose":
        perm = [0] + [int(i) + 1 for i in a["perm"]]
        return args[0].permute(*perm)
    if op == "concat":
        ref = max(args, key=lambda t: t.dim())
        args = [t if t.dim() == ref.dim() else t.unsqueeze(0).expand(ref.shape[0], *t.shape) for t in args]
        return torch.cat(args, dim=int(a["axis"]))
    if op == "identity":
        return args[0]
    if op == "constant":
        return p["value"]
    if op in ACTIVATIONS:
        return run_activation(op, args[0], a)
    extra = EXTRA_OPS.get(op)
    if extra is not None:
        return extra(node, args)
    raise ModelError(f"unsupported operation '{op}' in node '{node.name or node.output}'")


def _pad(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    top, left, bottom, right = (int(v) for v in node.attrs["padding"])
    mode = node.attrs.get("mode", "constant")
    if mode != "constant":
        return F.pad(args[0], (left, right, top, bottom), mode="reflect" if mode == "reflect" else "replicate")
    return F.pad(args[0], (left, right, top, bottom), value=float(node.attrs.get("value", 0.0)))


def _conv_transpose(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """ONNX ConvTranspose: the full transposed convolution, `output_padding` rows/columns added
    at the end, then `padding` (t, l, b, r) cropped, then the bias."""
    a, p = node.attrs, node.params
    full = F.conv_transpose2d(args[0], p["weight"], None, stride=tuple(a["stride"]), groups=int(a.get("groups", 1)),
                              dilation=tuple(a.get("dilation", (1, 1))))
    extra_h, extra_w = (int(v) for v in a.get("output_padding", (0, 0)))
    if extra_h or extra_w:
        full = F.pad(full, (0, extra_w, 0, extra_h))
    top, left, bottom, right = (int(v) for v in a.get("padding", (0, 0, 0, 0)))
    out = full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right]
    bias = p.get("bias")
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def _resize(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """Resize of H and W of (B, C, H, W) to `size`: nearest (floor of the asymmetric source
    coordinate) or bilinear (`align_corners` per ONNX's coordinate transformation)."""
    a = node.attrs
    if a["mode"] == "nearest":
        return F.interpolate(args[0], size=tuple(a["size"]), mode="nearest")
    return F.interpolate(args[0], size=tuple(a["size"]), mode="bilinear", align_corners=bool(a["align_corners"]))


def _reduce(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    a = node.attrs
    axes, keep = tuple(int(v) for v in a["axes"]), bool(a.get("keepdims", True))
    fn = {"reduce_sum": torch.sum, "reduce_mean": torch.mean}.get(node.op)
    if fn is not None:
        return fn(args[0], dim=axes, keepdim=keep)
    out = args[0]
    for axis in sorted(axes, reverse=True):
        out = (out.amax if node.op == "reduce_max" else out.amin)(dim=axis, keepdim=True)
    return out if keep else out.squeeze(axes)


def _layernorm(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    x, a, p = args[0], node.attrs, node.params
    shape = tuple(x.shape[int(a["axis"]):])
    out = F.layer_norm(x, shape, eps=float(a.get("epsilon", 1e-5)))
    if p.get("scale") is not None:
        out = out * p["scale"]
    return out if p.get("bias") is None else out + p["bias"]


def _instancenorm(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    p = node.params
    return F.instance_norm(args[0], weight=p.get("scale"), bias=p.get("bias"), eps=float(node.attrs.get("epsilon", 1e-5)))


def _mul(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return args[0] * args[1]


def _matmul(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    return torch.matmul(args[0], args[1])


def _unary(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    if node.op == "log_softmax":
        return F.log_softmax(args[0], dim=int(node.attrs["axis"]))
    if node.op == "pow":
        return torch.pow(args[0], float(node.attrs["exponent"]))
    return {"exp": torch.exp, "sqrt": torch.sqrt, "reciprocal": torch.reciprocal}[node.op](args[0])


def _slice(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    index: list[slice] = [slice(None)] * args[0].dim()
    a = node.attrs
    for axis, start, end, step in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return args[0][tuple(index)]


# Execution-only ops (see the module docstring): name -> fn(node, args) -> tensor.
EXTRA_OPS: dict[str, Any] = {"pad": _pad, "mul": _mul, "matmul": _matmul, "slice": _slice, "conv_transpose": _conv_transpose,
                             "resize": _resize, "reduce_sum": _reduce, "reduce_mean": _reduce, "reduce_max": _reduce,
                             "reduce_min": _reduce, "layernorm": _layernorm, "instancenorm": _instancenorm,
                             "exp": _unary, "sqrt": _unary, "reciprocal": _unary, "pow": _unary,
                             "log_softmax": _unary}


class GraphModule(torch.nn.Module):
    """Runs a Graph in torch: forward(x) with x of shape (B, *graph.input_shape)."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        # values no node after position i reads are freed after node i (peak memory: the live
        # activations, not all of them)
        last_use: dict[str, int] = {}
        for i, node in enumerate(graph.nodes):
            for name in node.inputs:
                last_use[name] = i
        self._free_after = [[name for name in dict.fromkeys(node.inputs)
                             if last_use.get(name) == i and name != graph.output_name]
                            for i, node in enumerate(graph.nodes)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def _steps(self) -> list:
        """(fn(args) -> tensor, input names, output name, names freed after) per node, for the
        graph the module holds now (rebuilt after .to(): `node_function` binds its tensors)."""
        if getattr(self, "_steps_of", None) is not self.graph:
            self._steps_cache = [(node_function(node), node.inputs, node.output, dead)
                                 for node, dead in zip(self.graph.nodes, self._free_after)]
            self._steps_of = self.graph
        return self._steps_cache

    def _run(self, x: torch.Tensor, measure: bool = False) -> tuple[torch.Tensor, int]:
        """(outputs (B, m), with `measure` the most activation values alive at once, else 0)."""
        values: dict[str, torch.Tensor] = {self.graph.input_name: x}
        peak = x.numel()
        for fn, inputs, output, dead in self._steps():
            values[output] = fn([values[name] for name in inputs])
            if measure:  # (constants have no batch dimension and are not activations)
                peak = max(peak, sum(v.numel() for v in values.values() if v.dim() and v.shape[0] == x.shape[0]))
            for name in dead:
                del values[name]
        out = values[self.graph.output_name]
        return (out if out.dim() == 2 else out.reshape(out.shape[0], -1)), peak if measure else 0

    @torch.no_grad()
    def peak_live_numel(self) -> int:
        """The largest number of activation values alive at once for one sample (a forward on zeros)."""
        example = self._float_param()
        x = torch.zeros((1, *self.graph.input_shape), dtype=example.dtype if example is not None else torch.float32,
                        device=example.device if example is not None else None)
        return int(self._run(x, measure=True)[1])

    def _float_param(self) -> torch.Tensor | None:
        return next((v for n in self.graph.nodes for v in n.params.values()
                     if isinstance(v, torch.Tensor) and v.is_floating_point()), None)

    def _apply(self, fn, recurse=True):  # keep Graph tensors in step with .to()/.cuda()
        # probe with the dtype the weights have: .to(device) alone must not change it
        current = self._float_param()
        probe = fn(torch.zeros(1, dtype=current.dtype if current is not None else torch.float32))
        self.graph = self.graph.to(probe.device, probe.dtype if probe.is_floating_point() else None)
        return super()._apply(fn, recurse)
