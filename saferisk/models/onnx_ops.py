"""ONNX operator -> normalised graph node conversions (used by `saferisk.models.onnx_reader`).

Each handler gets the builder, the ONNX node, its resolved inputs (`Var` for tensors that
depend on the input, `Const` for folded constants, None for absent optional inputs) and its
attributes, emits zero or more graph nodes and binds the node's outputs.

Conversions (x variable, c constant):
  Gemm / MatMul(x, W) [+ Add(c)]    -> linear (alpha, beta, transB folded; bias folded in)
  Conv (1-D via reshape, 2-D)       -> conv (auto_pad, pads; a preceding zero Pad is folded in)
  Add/Sub/Mul/Div(x, c), Neg, BatchNormalization -> affine ; Add/Sub(x, y) -> add
  Relu, LeakyRelu, PRelu (one slope; per-channel slopes as relu(x) - a relu(-x)), Sigmoid, Tanh, Softmax, Flatten, Reshape, Squeeze, Unsqueeze,
  Transpose, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (1-D via (1, k)), Concat, Clip, Pad (constant,
  reflect, edge), ConvTranspose (2-D), Resize/Upsample (nearest-floor, bilinear), ReduceSum/Mean/
  Max/Min over per-sample axes, LayerNormalization, InstanceNormalization,
  Slice and Gather (constant, contiguous indices) of non-batch axes -> slice (extra op),
  Mul of two variables -> mul, MatMul of two variables -> matmul (extra ops), Dropout / Identity /
  Cast-to-float (aliases), Exp / Sqrt / Reciprocal / Pow(x, c) -> exp / sqrt / reciprocal / pow,
  Div(x, y) -> x * reciprocal(y) (torch's decomposed LayerNorm -> layernorm), Max/Min -> relu
  forms, Split / Gather -> slice, Where (constant condition) and Expand -> affine, ReduceL2,
  LogSoftmax -> log_softmax; LSTM / GRU / RNN: `saferisk.models.onnx_rnn`;
  Elu, Selu, Celu, Softplus, Softsign, Erf, Gelu, Mish, HardSigmoid, HardSwish, Abs, Sin, Cos ->
  the activation of the same name (`saferisk.models.activations`).
Anything else that depends on the input raises a ModelError naming the operator and the node.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from saferisk.errors import ModelError
from saferisk.models.activations import ACTIVATIONS, ONNX_ACTIVATIONS
from saferisk.models.onnx_builder import (WORLD_BATCH, Const, GraphBuilder, Handler, Var, as_tensor, attr_text,
                                          node_attrs)

HANDLERS: dict[str, Handler] = {}
# handlers that read (C, H, W)-style layouts: in the per-sample reading they see the sample
# without its batch slot (GraphBuilder.build)
SPATIAL = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                     "BatchNormalization", "InstanceNormalization", "Pad", "Resize", "Upsample"})


def _handles(*ops: str):
    def deco(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return deco


def _label(node) -> str:
    return node.name or node.output[0]


@_handles("Identity", "Dropout")
def _alias(b: GraphBuilder, node, ins, attrs) -> None:
    if len(node.output) > 1 and node.output[1] and b.consumers.get(node.output[1]):
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): its mask output is used; only inference is supported")
    b.set(node.output[0], ins[0])


@_handles("Cast")
def _cast(b: GraphBuilder, node, ins, attrs) -> None:
    from onnx import TensorProto

    if attrs.get("to") not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        raise ModelError(f"node '{_label(node)}' (Cast): casting the input path to a non-float type is not supported")
    b.set(node.output[0], ins[0])


def _try_fold_bias(b: GraphBuilder, x: Var, onnx_name: str, c: np.ndarray) -> bool:
    """Fold Add(linear/conv output, c) into the bias when c is per output channel."""
    prod = b.producer.get(x.name)
    if prod is None or prod.op not in ("linear", "conv") or x.name != onnx_name or not b.single_use(x, onnx_name):
        return False
    c = np.asarray(c, dtype=np.float32)
    if c.ndim > len(x.shape) + 1:  # would broadcast to a higher rank: keep it an affine node
        return False
    if prod.op == "linear":
        out = prod.params["weight"].shape[0]
        squeezed = c.reshape(-1) if c.size in (1, out) and all(d == 1 for d in c.shape[:-1]) else None
        if squeezed is None or (c.ndim > 0 and c.shape[-1] not in (1, out)):
            return False
        bias = np.broadcast_to(squeezed, (out,))
    else:
        channels = prod.params["weight"].shape[0]
        shape = c.shape
        while len(shape) > 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 3 or shape[1:] != (1, 1) or shape[0] not in (1, channels):
            return False
        bias = np.broadcast_to(c.reshape(-1), (channels,))
    old = prod.params.get("bias")
    new = as_tensor(bias) if old is None else old + as_tensor(bias)
    prod.params["bias"] = new
    return True


def _negated(b: GraphBuilder, node, x: Var, out: str) -> Var:
    """-x as an affine node named `out`."""
    return b.emit("affine", [x], out, {"scale": torch.tensor(-1.0), "shift": None}, label=_label(node))


def _same_rank(b: GraphBuilder, node, x: Var, y: Var) -> tuple[Var, Var]:
    """x and y with ONNX broadcasting's leading 1s made explicit (per-sample reading: the hidden
    batch axis must line up)."""
    if x.rank == y.rank or not (x.explicit and y.explicit):
        return x, y
    def lift(v: Var, rank: int) -> Var:
        return b.emit("reshape", [v], b.fresh(f"{v.name}/rank{rank}"), attrs={"shape": [1] * (rank - v.rank) + list(v.shape)},
                      label=_label(node))
    rank = max(x.rank, y.rank)
    return (lift(x, rank) if x.rank < rank else x), (lift(y, rank) if y.rank < rank else y)


@_handles("Add", "Sub")
def _add_sub(b: GraphBuilder, node, ins, attrs) -> None:
    x, y = ins
    sub = node.op_type == "Sub"
    if isinstance(x, Var) and isinstance(y, Var):
        x, y = _same_rank(b, node, x, y)
        if sub:
            y = _negated(b, node, y, b.fresh(node.output[0] + "/neg"))
        b.set(node.output[0], b.emit("add", [x, y], node.output[0], label=_label(node)))
        return
    if isinstance(x, Var):
        c = b.const(y, node, "the constant operand")
        c = -c if sub else c
        if _try_fold_bias(b, x, node.input[0], c):
            b.set(node.output[0], x)
            return
        b.set(node.output[0], b.emit("affine", [x], node.output[0], {"scale": None, "shift": b.param(c, x, node)},
                                     label=_label(node)))
        return
    c = b.const(x, node, "the constant operand")
    scale = torch.tensor(-1.0) if sub else None
    if not sub and _try_fold_bias(b, y, node.input[1], c):
        b.set(node.output[0], y)
        return
    b.set(node.output[0], b.emit("affine", [y], node.output[0], {"scale": scale, "shift": b.param(c, y, node)},
                                 label=_label(node)))


@_handles("Mul", "Div")
def _mul_div(b: GraphBuilder, node, ins, attrs) -> None:
    x, y = ins
    if node.op_type == "Div" and isinstance(y, Var):
        if isinstance(x, Var) and _decomposed_layernorm(b, node):
            return
        inverse = b.emit("reciprocal", [y], b.fresh(node.output[0] + "/reciprocal"), label=_label(node))
        if not isinstance(x, Var):  # c / y = c * (1 / y)
            b.set(node.output[0], b.emit("affine", [inverse], node.output[0],
                                         {"scale": b.param(b.const(x, node, "the numerator"), inverse, node),
                                          "shift": None}, label=_label(node)))
            return
        x, inverse = _same_rank(b, node, x, inverse)
        b.set(node.output[0], b.emit("mul", [x, inverse], node.output[0], label=_label(node)))
        return
    if isinstance(x, Var) and isinstance(y, Var):
        x, y = _same_rank(b, node, x, y)
        b.set(node.output[0], b.emit("mul", [x, y], node.output[0], label=_label(node)))
        return
    var, c = (x, y) if isinstance(x, Var) else (y, x)
    value = b.const(c, node, "the constant operand").astype(np.float64)
    if node.op_type == "Div":
        value = 1.0 / value
    b.set(node.output[0], b.emit("affine", [var], node.output[0], {"scale": b.param(value, var, node), "shift": None},
                                 label=_label(node)))


def _decomposed_layernorm(b: GraphBuilder, node) -> bool:
    """Div(x - mean(x), sqrt(mean((x - mean(x))^2) + eps)) over trailing axes, as torch exports
    LayerNorm below opset 17, becomes one layernorm node (the Pow/Sqrt chain is then dead code)."""
    producer = b.onnx_producer

    def made_by(name, op):
        found = producer.get(name)
        return found if found is not None and found.op_type == op else None

    def kept_axes(reduce) -> list[int] | None:  # axes of a ReduceMean that keeps its dims
        attrs = node_attrs(reduce) if reduce is not None else {"keepdims": 0}
        if not attrs.get("keepdims", 1):
            return None
        if len(reduce.input) > 1 and isinstance(b.values.get(reduce.input[1]), Const):
            return [int(a) for a in b.values[reduce.input[1]].a.reshape(-1)]
        return [int(a) for a in attrs.get("axes", [])] or None

    centred, deviation = node.input
    sqrt = made_by(deviation, "Sqrt")
    add = made_by(sqrt.input[0], "Add") if sqrt is not None else None
    if add is None:
        return False
    eps_name = next((n for n in add.input if isinstance(b.values.get(n), Const)), None)
    var_name = next((n for n in add.input if n != eps_name), None)
    variance = made_by(var_name, "ReduceMean")
    square = made_by(variance.input[0], "Pow") if variance is not None else None
    sub = made_by(centred, "Sub")
    mean = made_by(sub.input[1], "ReduceMean") if sub is not None else None
    if eps_name is None or square is None or mean is None or square.input[0] != centred or mean.input[0] != sub.input[0]:
        return False
    exponent, eps = b.values.get(square.input[1]), b.values[eps_name].a
    x = b.values.get(sub.input[0])
    axes = kept_axes(mean)
    if not isinstance(x, Var) or not isinstance(exponent, Const) or exponent.a.size != 1 or float(exponent.a.reshape(-1)[0]) != 2.0 \
            or eps.size != 1 or not axes or kept_axes(variance) != axes:
        return False
    rank = x.rank
    axes = sorted(a + rank if a < 0 else a for a in axes)
    if axes != list(range(rank - len(axes), rank)):
        return False
    b.set(node.output[0], b.emit("layernorm", [x], node.output[0], {"scale": None, "bias": None},
                                 {"axis": _batched_axis(axes[0], x, node), "epsilon": float(eps.reshape(-1)[0])},
                                 label=_label(node)))
    return True


@_handles("Exp", "Sqrt", "Reciprocal")
def _unary(b: GraphBuilder, node, ins, attrs) -> None:
    b.set(node.output[0], b.emit(node.op_type.lower(), [ins[0]], node.output[0], label=_label(node)))


@_handles("Pow")
def _pow(b: GraphBuilder, node, ins, attrs) -> None:
    x, exponent = ins
    if not isinstance(x, Var) or isinstance(exponent, Var) or b.const(exponent, node, "the exponent").size != 1:
        raise ModelError(f"unsupported ONNX operator 'Pow' (only input ** constant scalar) in node '{_label(node)}'")
    value = float(b.const(exponent, node, "the exponent").reshape(-1)[0])
    if value == 1.0:
        b.set(node.output[0], x)
        return
    b.set(node.output[0], b.emit("pow", [x], node.output[0], attrs={"exponent": value}, label=_label(node)))


@_handles("Neg")
def _neg(b: GraphBuilder, node, ins, attrs) -> None:
    b.set(node.output[0], _negated(b, node, ins[0], node.output[0]))


@_handles("MatMul")
def _matmul(b: GraphBuilder, node, ins, attrs) -> None:
    x, w = ins
    if isinstance(x, Var) and isinstance(w, Var):  # attention: Q K^T, A V
        x, w = _same_rank(b, node, x, w)
        b.set(node.output[0], b.emit("matmul", [x, w], node.output[0], label=_label(node)))
        return
    if not isinstance(x, Var):
        raise ModelError(f"unsupported ONNX operator 'MatMul' in node '{_label(node)}': only input @ constant weight is supported")
    weight = b.const(w, node, "the weight")
    if weight.ndim != 2 or len(x.shape) < 1:
        raise ModelError(f"node '{_label(node)}' (MatMul): weight of rank {weight.ndim} on input {x.shape} is not supported")
    b.set(node.output[0], b.emit("linear", [x], node.output[0], {"weight": as_tensor(weight.T), "bias": None},
                                 label=_label(node)))


@_handles("Gemm")
def _gemm(b: GraphBuilder, node, ins, attrs) -> None:
    x, w = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    if not isinstance(x, Var) or isinstance(w, Var) or isinstance(c, Var) or attrs.get("transA", 0):
        raise ModelError(f"unsupported ONNX operator 'Gemm' in node '{_label(node)}': only input @ constant (transA=0) is supported")
    if len(x.shape) != (2 if x.explicit else 1):
        raise ModelError(f"node '{_label(node)}' (Gemm): input must be (B, k), got per-sample shape {x.shape}")
    weight = b.const(w, node, "the weight").astype(np.float64)
    weight = weight if attrs.get("transB", 0) else weight.T  # (out, in)
    weight = weight * float(attrs.get("alpha", 1.0))
    bias = None
    if c is not None:
        cv = np.asarray(b.const(c, node, "the bias"), dtype=np.float64) * float(attrs.get("beta", 1.0))
        if cv.ndim == 2 and cv.shape[0] != 1:
            raise ModelError(f"node '{_label(node)}' (Gemm): bias of shape {cv.shape} depends on the batch row")
        bias = as_tensor(np.broadcast_to(cv.reshape(-1) if cv.ndim else cv, (weight.shape[0],)))
    b.set(node.output[0], b.emit("linear", [x], node.output[0], {"weight": as_tensor(weight), "bias": bias},
                                 label=_label(node)))


def _spatial_pads(attrs, in_hw, kernel, stride, dilation, node) -> tuple[int, int, int, int]:
    """ONNX pads/auto_pad -> (top, left, bottom, right)."""
    auto = attr_text(attrs.get("auto_pad", b"NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin[0], begin[1], end[0], end[1]
    if auto == "VALID":
        return 0, 0, 0, 0
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): pads {pads} are not 2-D")
    return int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])


@_handles("Conv")
def _conv(b: GraphBuilder, node, ins, attrs) -> None:
    x, w = ins[0], ins[1]
    bias_c = ins[2] if len(ins) > 2 else None
    if not isinstance(x, Var) or isinstance(w, Var) or isinstance(bias_c, Var):
        raise ModelError(f"unsupported ONNX operator 'Conv' in node '{_label(node)}': weights must be constant")
    weight = b.const(w, node, "the weight")
    bias = None if bias_c is None else as_tensor(b.const(bias_c, node, "the bias").reshape(-1))
    one_d = weight.ndim == 3
    if weight.ndim not in (3, 4) or len(x.shape) != weight.ndim - 1:
        raise ModelError(f"node '{_label(node)}' (Conv): only 1-D and 2-D convolutions are supported "
                         f"(weight {weight.shape}, per-sample input {x.shape})")
    def two(v, default):
        v = list(attrs.get(v, default))
        return [1] + v if one_d else v
    kernel = [1, weight.shape[2]] if one_d else list(weight.shape[2:])
    stride, dilation = two("strides", [1] * (weight.ndim - 2)), two("dilations", [1] * (weight.ndim - 2))
    conv_attrs = dict(attrs)
    if one_d and "pads" in attrs:
        p = list(attrs["pads"])
        conv_attrs["pads"] = [0, p[0], 0, p[1]]
    src = x
    if one_d:
        weight = weight[:, :, None, :]
        src = b.emit("reshape", [x], b.fresh(node.output[0] + "/as2d"), attrs={"shape": [x.shape[0], 1, x.shape[1]]},
                     label=_label(node))
    hw = src.shape[1:]
    padding = _spatial_pads(conv_attrs, hw, kernel, stride, dilation, node)
    # fold a zero Pad that only this Conv reads
    prod = b.producer.get(src.name)
    if prod is not None and prod.op == "pad" and float(prod.attrs.get("value", 0.0)) == 0.0 and \
            prod.attrs.get("mode", "constant") == "constant" and \
            src.name == node.input[0] and b.single_use(src, node.input[0]) and not one_d:
        padding = tuple(p + q for p, q in zip(padding, prod.attrs["padding"]))
        src = Var(prod.inputs[0], b.shapes[prod.inputs[0]])
    out = b.emit("conv", [src], node.output[0] if not one_d else b.fresh(node.output[0] + "/2d"),
                 {"weight": as_tensor(weight), "bias": bias},
                 {"stride": tuple(int(s) for s in stride), "padding": tuple(int(p) for p in padding),
                  "dilation": tuple(int(d) for d in dilation), "groups": int(attrs.get("group", 1))}, label=_label(node))
    if one_d:
        out = b.emit("reshape", [out], node.output[0], attrs={"shape": [out.shape[0], out.shape[2]]}, label=_label(node))
    b.set(node.output[0], out)


@_handles("BatchNormalization")
def _batchnorm(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    if any(isinstance(v, Var) for v in ins[1:5]):
        raise ModelError(f"node '{_label(node)}' (BatchNormalization): statistics must be constant")
    if attrs.get("training_mode", 0):
        raise ModelError(f"node '{_label(node)}' (BatchNormalization): training mode is not supported")
    gamma, beta, mean, var = (b.const(v, node, "a statistic").astype(np.float64) for v in ins[1:5])
    scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    shift = beta - mean * scale
    trailing = (1,) * (len(x.shape) - 1)
    b.set(node.output[0], b.emit("affine", [x], node.output[0],
                                 {"scale": as_tensor(scale.reshape((-1,) + trailing)),
                                  "shift": as_tensor(shift.reshape((-1,) + trailing))}, label=_label(node)))


@_handles("Relu", "Sigmoid", "Tanh")
def _elementwise(b: GraphBuilder, node, ins, attrs) -> None:
    op = node.op_type.lower()
    b.set(node.output[0], b.emit(op, [ins[0]], node.output[0], label=_label(node)))


@_handles(*ONNX_ACTIVATIONS)
def _activation(b: GraphBuilder, node, ins, attrs) -> None:
    op = ONNX_ACTIVATIONS[node.op_type]
    values = {**ACTIVATIONS[op].onnx_defaults, **{k: v for k, v in attrs.items() if k in ACTIVATIONS[op].onnx_defaults}}
    values = {k: attr_text(v) if isinstance(v, bytes) else v for k, v in values.items()}
    b.set(node.output[0], b.emit(op, [ins[0]], node.output[0], attrs=values, label=_label(node)))


@_handles("LeakyRelu")
def _leaky(b: GraphBuilder, node, ins, attrs) -> None:
    b.set(node.output[0], b.emit("leaky_relu", [ins[0]], node.output[0], attrs={"alpha": float(attrs.get("alpha", 0.01))},
                                 label=_label(node)))


@_handles("PRelu")
def _prelu(b: GraphBuilder, node, ins, attrs) -> None:
    slope = ins[1]
    if isinstance(slope, Var):
        raise ModelError(f"node '{_label(node)}' (PRelu): the slope must be constant")
    value = b.const(slope, node, "the slope")
    if value.size == 1:
        b.set(node.output[0], b.emit("leaky_relu", [ins[0]], node.output[0], attrs={"alpha": float(value.reshape(-1)[0])},
                                     label=_label(node)))
        return
    # per-channel slopes a: prelu(x) = relu(x) - a relu(-x), from ops the bounds support
    x, label, out = ins[0], _label(node), node.output[0]
    positive = b.emit("relu", [x], b.fresh(out + "/pos"), label=label)
    flipped = _negated(b, node, x, b.fresh(out + "/neg"))
    negative = b.emit("relu", [flipped], b.fresh(out + "/relu_neg"), label=label)
    scaled = b.emit("affine", [negative], b.fresh(out + "/slope"),
                    {"scale": -b.param(value.astype(np.float64), x, node), "shift": None}, label=label)
    b.set(out, b.emit("add", [positive, scaled], out, label=label))


def _batched_axis(axis: int, x: Var, node, rank: int | None = None) -> int:
    """The internal (batched) axis of ONNX `axis` of x (of ONNX rank `rank`, default x's): the
    same number, never the batch axis 0; in the per-sample reading (x.explicit) one more, any axis."""
    rank = x.rank if rank is None else rank
    axis = int(axis) + rank if int(axis) < 0 else int(axis)
    if not (0 if x.explicit else 1) <= axis < rank:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): axis {axis} is the batch axis or out of range")
    return axis + 1 if x.explicit else axis


@_handles("Softmax", "LogSoftmax")
def _softmax(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axis = _batched_axis(attrs.get("axis", -1), x, node)
    op = "softmax" if node.op_type == "Softmax" else "log_softmax"
    b.set(node.output[0], b.emit(op, [x], node.output[0], attrs={"axis": axis}, label=_label(node)))


@_handles("Max", "Min")
def _max_min(b: GraphBuilder, node, ins, attrs) -> None:
    """Elementwise max / min of two tensors from relu: max(x, y) = y + relu(x - y),
    min(x, y) = x - relu(x - y) (a constant operand is a shift)."""
    if len(ins) != 2:
        raise ModelError(f"unsupported ONNX operator '{node.op_type}' of {len(ins)} inputs in node '{_label(node)}'")
    x, y = ins
    if not isinstance(x, Var):
        x, y = y, x  # both orders give the same max / min
    label, out = _label(node), node.output[0]
    if isinstance(y, Var):
        x, y = _same_rank(b, node, x, y)
        difference = b.emit("add", [x, _negated(b, node, y, b.fresh(out + "/neg"))], b.fresh(out + "/diff"), label=label)
    else:
        c = b.param(-b.const(y, node, "the constant operand"), x, node)
        difference = b.emit("affine", [x], b.fresh(out + "/diff"), {"scale": None, "shift": c}, label=label)
    excess = b.emit("relu", [difference], b.fresh(out + "/relu"), label=label)
    if node.op_type == "Max":  # y + relu(x - y)
        if isinstance(y, Var):
            b.set(out, b.emit("add", [y, excess], out, label=label))
        else:
            b.set(out, b.emit("affine", [excess], out, {"scale": None, "shift": -c}, label=label))
        return
    b.set(out, b.emit("add", [x, _negated(b, node, excess, b.fresh(out + "/negexcess"))], out,
                      label=label))  # x - relu(x - y)


@_handles("Split")
def _split(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axis = _batched_axis(attrs.get("axis", 0), x, node)
    size = x.shape[axis - 1]
    sizes = _constant_input(b, node, ins, 1, "the split sizes")
    if sizes is not None:
        sizes = [int(v) for v in sizes.reshape(-1)]
    elif "split" in attrs:
        sizes = [int(v) for v in attrs["split"]]
    else:
        parts = int(attrs.get("num_outputs", len(node.output)))
        chunk = -(-size // parts)
        sizes = [min(chunk, size - k * chunk) for k in range(parts)]
    if sum(sizes) != size or len(sizes) != len(node.output):
        raise ModelError(f"node '{_label(node)}' (Split): sizes {sizes} do not split axis of size {size}")
    start = 0
    for name, length in zip(node.output, sizes):
        if name:
            b.set(name, _emit_slice(b, node, x, name, {axis: (start, start + length, 1)}))
        start += length


@_handles("Where")
def _where(b: GraphBuilder, node, ins, attrs) -> None:
    """Where(constant condition m, x, y) = x * m + y * (1 - m)."""
    condition, x, y = ins
    if isinstance(condition, Var):
        raise ModelError(f"unsupported ONNX operator 'Where' with an input-dependent condition in node '{_label(node)}'")
    mask = b.const(condition, node, "the condition").astype(np.float64)
    label, out = _label(node), node.output[0]
    ref = x if isinstance(x, Var) else y
    parts = []
    for value, weight in ((x, mask), (y, 1.0 - mask)):
        if isinstance(value, Var):
            parts.append(b.emit("affine", [value], b.fresh(out + "/masked"),
                                {"scale": b.param(weight, value, node), "shift": None}, label=label))
    constant = sum(b.const(v, node, "a constant branch").astype(np.float64) * w
                   for v, w in ((x, mask), (y, 1.0 - mask)) if not isinstance(v, Var))
    result = parts[0] if len(parts) == 1 else b.emit("add", [*_same_rank(b, node, parts[0], parts[1])], b.fresh(out + "/sum"),
                                                     label=label)
    if not isinstance(constant, int) and np.any(constant):
        result = b.emit("affine", [result], b.fresh(out + "/const"), {"scale": None, "shift": b.param(constant, ref, node)},
                        label=label)
    b.set(out, result)


@_handles("Expand")
def _expand(b: GraphBuilder, node, ins, attrs) -> None:
    """x broadcast to a constant shape (x * ones(shape)); the same shape is x itself."""
    x, shape = ins
    target = [int(v) for v in b.const(shape, node, "the shape").reshape(-1)]
    per_sample = target if x.explicit else target[1:]
    ones = np.ones(np.broadcast_shapes(tuple(per_sample), x.shape) if len(target) > 0 else x.shape)
    if ones.shape == x.shape:
        b.set(node.output[0], x)
        return
    b.set(node.output[0], b.emit("affine", [x], node.output[0], {"scale": as_tensor(ones), "shift": None},
                                 label=_label(node)))


@_handles("ReduceL2")
def _reduce_l2(b: GraphBuilder, node, ins, attrs) -> None:
    """sqrt(sum(x^2)) over the axes."""
    x, label, out = ins[0], _label(node), node.output[0]
    squared = b.emit("pow", [x], b.fresh(out + "/square"), attrs={"exponent": 2.0}, label=label)
    summed = _emit_reduce(b, node, squared, ins, attrs, "reduce_sum", b.fresh(out + "/sum"))
    b.set(out, b.emit("sqrt", [summed], out, label=label))


def _reshape_to(b: GraphBuilder, node, x: Var, shape: list[int]) -> None:
    numel = int(np.prod(x.shape)) if x.shape else 1
    shape = [int(d) for d in shape]
    if shape.count(-1) > 1:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): more than one -1 in {shape}")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1])) if len(shape) > 1 else 1
        if known == 0 or numel % known:
            raise ModelError(f"node '{_label(node)}' ({node.op_type}): cannot reshape {x.shape} to {shape}")
        shape[shape.index(-1)] = numel // known
    if int(np.prod(shape)) != numel:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): cannot reshape per-sample {x.shape} to {shape}")
    if tuple(shape) == x.shape:
        b.set(node.output[0], x)
    elif len(shape) == 1:
        b.set(node.output[0], b.emit("flatten", [x], node.output[0], label=_label(node)))
    else:
        b.set(node.output[0], b.emit("reshape", [x], node.output[0], attrs={"shape": shape}, label=_label(node)))


@_handles("Flatten")
def _flatten(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axis = int(attrs.get("axis", 1))
    axis = axis + x.rank if axis < 0 else axis
    if x.explicit:  # one sample's ONNX tensor -> 2-D (prod of dims before axis, the rest)
        _reshape_to(b, node, x, [int(np.prod(x.shape[:axis])), -1])
        return
    if axis == 0 or int(np.prod(x.shape[: axis - 1])) != 1:
        raise ModelError(f"node '{_label(node)}' (Flatten): axis {axis} would mix the batch dimension")
    _reshape_to(b, node, x, [-1])


@_handles("Reshape")
def _reshape(b: GraphBuilder, node, ins, attrs) -> None:
    x, target = ins
    if isinstance(target, Var):
        raise ModelError(f"node '{_label(node)}' (Reshape): the target shape depends on the input values")
    ta, tb = (np.asarray(target.a).astype(np.int64).reshape(-1), np.asarray(target.b).astype(np.int64).reshape(-1))
    if ta.shape != tb.shape or len(ta) == 0:
        raise ModelError(f"node '{_label(node)}' (Reshape): unsupported target shape {ta.tolist()}")
    allowzero = bool(attrs.get("allowzero", 0))
    if x.explicit:  # one sample's ONNX tensor: the target as it is (0 copies the input's size)
        _reshape_to(b, node, x, [x.shape[i] if d == 0 and not allowzero else int(d) for i, d in enumerate(ta)])
        return
    differs = ta != tb
    if differs[1:].any():
        raise ModelError(f"node '{_label(node)}' (Reshape): target {ta.tolist()} mixes the batch size into a non-batch dimension")
    first_is_batch = (differs[0] and ta[0] == WORLD_BATCH[0] and tb[0] == WORLD_BATCH[1]) or \
        ta[0] in (-1, 1) or (ta[0] == 0 and not allowzero)
    if not first_is_batch:
        raise ModelError(f"node '{_label(node)}' (Reshape): target {ta.tolist()} does not keep the batch dimension first")
    rest = ta[1:].tolist()
    if ta[0] == -1 and -1 in rest:
        raise ModelError(f"node '{_label(node)}' (Reshape): target {ta.tolist()} has two -1 entries")
    if not allowzero:
        rest = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(rest)]
    _reshape_to(b, node, x, rest)


def _axes(node, ins, attrs) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        if isinstance(ins[1], Var):
            raise ModelError(f"node '{_label(node)}' ({node.op_type}): axes must be constant")
        return [int(a) for a in np.asarray(ins[1].a).reshape(-1)]
    return [int(a) for a in attrs["axes"]] if "axes" in attrs else None


@_handles("Squeeze")
def _squeeze(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axes = _axes(node, ins, attrs)
    if axes is None:
        axes = [i + (0 if x.explicit else 1) for i, d in enumerate(x.shape) if d == 1]
    axes = [_batched_axis(a, x, node) - 1 for a in axes]
    if any(x.shape[a] != 1 for a in axes):
        raise ModelError(f"node '{_label(node)}' (Squeeze): axes {axes} of per-sample {x.shape} are not 1")
    _reshape_to(b, node, x, [d for i, d in enumerate(x.shape) if i not in axes])


@_handles("Unsqueeze")
def _unsqueeze(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axes = _axes(node, ins, attrs) or []
    out_rank = x.rank + len(axes)
    axes = sorted(_batched_axis(a, x, node, out_rank) - 1 for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    _reshape_to(b, node, x, shape)


@_handles("Transpose")
def _transpose(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    perm = list(attrs.get("perm", list(range(x.rank))[::-1]))
    if x.explicit:  # a permutation of one sample's ONNX tensor, batch slot included
        per_sample = [int(p) for p in perm]
    elif perm[0] != 0:
        raise ModelError(f"node '{_label(node)}' (Transpose): perm {perm} moves the batch dimension")
    else:
        per_sample = [int(p) - 1 for p in perm[1:]]
    if per_sample == list(range(len(per_sample))):
        b.set(node.output[0], x)
        return
    b.set(node.output[0], b.emit("transpose", [x], node.output[0], attrs={"perm": per_sample}, label=_label(node)))


def _pool(b: GraphBuilder, node, x: Var, op: str, kernel, stride, padding, attrs, one_d: bool = False) -> None:
    out_attrs = {"kernel": tuple(int(k) for k in kernel), "stride": tuple(int(s) for s in stride),
                 "padding": tuple(int(p) for p in padding)}
    if op == "avgpool":
        out_attrs["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
    out = b.emit(op, [x], b.fresh(node.output[0] + "/2d") if one_d else node.output[0], attrs=out_attrs,
                 label=_label(node))
    if one_d:  # back from (C, 1, L') to (C, L')
        out = b.emit("reshape", [out], node.output[0], attrs={"shape": [out.shape[0], out.shape[2]]}, label=_label(node))
    b.set(node.output[0], out)


def _as_2d(b: GraphBuilder, node, x: Var, attrs: dict) -> tuple[Var, dict]:
    """A 1-D pooling input (C, L) as (C, 1, L), its attributes as those of a (1, k) 2-D pooling."""
    lifted = dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            lifted[key] = [1, *attrs[key]]
    if "pads" in attrs:
        lifted["pads"] = [0, int(attrs["pads"][0]), 0, int(attrs["pads"][1])]
    return b.emit("reshape", [x], b.fresh(node.output[0] + "/as2d"), attrs={"shape": [x.shape[0], 1, x.shape[1]]},
                  label=_label(node)), lifted


@_handles("MaxPool", "AveragePool")
def _pool_node(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    one_d = len(x.shape) == 2
    if one_d:
        x, attrs = _as_2d(b, node, x, attrs)
    if len(x.shape) != 3:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): only 1-D and 2-D pooling are supported (per-sample {x.shape})")
    if len(node.output) > 1 and node.output[1] and b.consumers.get(node.output[1]):
        raise ModelError(f"node '{_label(node)}' (MaxPool): the Indices output is not supported")
    kernel = list(attrs["kernel_shape"])
    stride = list(attrs.get("strides", [1, 1]))
    dilation = list(attrs.get("dilations", [1, 1]))
    if dilation != [1, 1]:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): dilated pooling is not supported")
    top, left, bottom, right = _spatial_pads(attrs, x.shape[1:], kernel, stride, dilation, node)
    if attrs.get("ceil_mode", 0):
        extra = []
        for size, k, s, p0, p1 in zip(x.shape[1:], kernel, stride, (top, left), (bottom, right)):
            span = size + p0 + p1 - k
            out_ceil = math.ceil(span / s) + 1
            if (out_ceil - 1) * s >= size + p0:  # last window would start in the end padding
                out_ceil -= 1
            extra.append(max((out_ceil - 1) * s + k - (size + p0 + p1), 0))
        if any(extra) and node.op_type == "AveragePool":
            raise ModelError(f"node '{_label(node)}' (AveragePool): ceil_mode with partial windows is not supported")
        bottom, right = bottom + extra[0], right + extra[1]
    op = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    _pool(b, node, x, op, kernel, stride, (top, left, bottom, right), attrs, one_d)


@_handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    one_d = len(x.shape) == 2
    if one_d:
        x, _ = _as_2d(b, node, x, {})
    if len(x.shape) != 3:
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): only 1-D and 2-D pooling are supported (per-sample {x.shape})")
    op = "avgpool" if node.op_type == "GlobalAveragePool" else "maxpool"
    _pool(b, node, x, op, x.shape[1:], x.shape[1:], (0, 0, 0, 0), {}, one_d)


@_handles("Concat")
def _concat(b: GraphBuilder, node, ins, attrs) -> None:
    ref = next(v for v in ins if isinstance(v, Var))
    axis = _batched_axis(attrs["axis"], ref, node)
    parts = []
    for i, v in enumerate(ins):
        if isinstance(v, Const):
            v = b.emit("constant", [], b.fresh(node.input[i] or f"{node.output[0]}/const{i}"),
                       {"value": b.param(b.const(v, node, "a constant part"), ref, node)}, label=_label(node))
        parts.append(v)
    b.set(node.output[0], b.emit("concat", parts, node.output[0], attrs={"axis": axis}, label=_label(node)))


@_handles("Clip")
def _clip(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    bounds = []
    for i, key in ((1, "min"), (2, "max")):
        v = ins[i] if len(ins) > i else None
        if isinstance(v, Var):
            raise ModelError(f"node '{_label(node)}' (Clip): {key} must be constant")
        value = float(b.const(v, node, key).reshape(-1)[0]) if v is not None else attrs.get(key)
        bounds.append(None if value is None or (key == "min" and value == -math.inf) or
                      (key == "max" and value == math.inf) else float(value))
    lo, hi = bounds
    if lo == 0.0 and hi is None:
        b.set(node.output[0], b.emit("relu", [x], node.output[0], label=_label(node)))
    elif lo is None and hi is None:
        b.set(node.output[0], x)
    else:
        b.set(node.output[0], b.emit("clip", [x], node.output[0], attrs={"min": lo, "max": hi}, label=_label(node)))


@_handles("Pad")
def _pad(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    mode = attr_text(attrs.get("mode", b"constant"))
    if mode not in ("constant", "reflect", "edge"):
        raise ModelError(f"unsupported ONNX operator 'Pad' with mode '{mode}' in node '{_label(node)}'")
    if any(isinstance(v, Var) for v in ins[1:]):
        raise ModelError(f"node '{_label(node)}' (Pad): pads must be constant")
    pads = [int(p) for p in b.const(ins[1], node, "the pads").reshape(-1)]
    value = float(b.const(ins[2], node, "the value").reshape(-1)[0]) if len(ins) > 2 and ins[2] is not None else 0.0
    if len(ins) > 3 and ins[3] is not None:
        raise ModelError(f"node '{_label(node)}' (Pad): the axes input is not supported")
    rank = x.rank
    begin, end = pads[:rank], pads[rank:]
    if len(x.shape) != 3 or any(begin[:2]) or any(end[:2]) or min(pads) < 0:
        raise ModelError(f"unsupported ONNX operator 'Pad' (only non-negative padding of H and W of (B,C,H,W)) in node '{_label(node)}'")
    padding = (begin[2], begin[3], end[2], end[3])
    b.set(node.output[0], b.emit("pad", [x], node.output[0], attrs={"padding": padding, "value": value, "mode": mode},
                                 label=_label(node)))


def _constant_input(b: GraphBuilder, node, ins, index: int, what: str):
    """The folded constant at input `index` (None when absent), refusing an input-dependent one."""
    if len(ins) <= index or ins[index] is None:
        return None
    if isinstance(ins[index], Var):
        raise ModelError(f"node '{_label(node)}' ({node.op_type}): {what} must be constant")
    return b.const(ins[index], node, what)


@_handles("ConvTranspose")
def _conv_transpose(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    weight = _constant_input(b, node, ins, 1, "the weight")
    bias = _constant_input(b, node, ins, 2, "the bias")
    if weight is None or weight.ndim != 4 or len(x.shape) != 3:
        raise ModelError(f"unsupported ONNX operator 'ConvTranspose' (only 2-D) in node '{_label(node)}'")
    if attr_text(attrs.get("auto_pad", b"NOTSET")) != "NOTSET" or "output_shape" in attrs:
        raise ModelError(f"unsupported ONNX operator 'ConvTranspose' with auto_pad/output_shape in node '{_label(node)}'")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    b.set(node.output[0], b.emit(
        "conv_transpose", [x], node.output[0],
        {"weight": as_tensor(weight), "bias": None if bias is None else as_tensor(bias.reshape(-1))},
        {"stride": tuple(int(v) for v in attrs.get("strides", [1, 1])), "padding": tuple(pads),
         "output_padding": tuple(int(v) for v in attrs.get("output_padding", [0, 0])),
         "dilation": tuple(int(v) for v in attrs.get("dilations", [1, 1])), "groups": int(attrs.get("group", 1))},
        label=_label(node)))


@_handles("Resize", "Upsample")
def _resize(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    mode = attr_text(attrs.get("mode", b"nearest"))
    transform = attr_text(attrs.get("coordinate_transformation_mode", b"half_pixel"))
    nearest = attr_text(attrs.get("nearest_mode", b"round_prefer_floor"))
    if node.op_type == "Upsample":  # opset < 10 only; sizes from scales
        scales, sizes = _constant_input(b, node, ins, 1, "the scales"), None
        transform, nearest = "asymmetric", "floor"
    else:
        scales = _constant_input(b, node, ins, 2, "the scales")
        sizes = _constant_input(b, node, ins, 3, "the sizes")
    if len(x.shape) != 3:
        raise ModelError(f"unsupported ONNX operator 'Resize' (only H and W of (B, C, H, W)) in node '{_label(node)}'")
    if sizes is not None and sizes.size:
        size = [int(v) for v in sizes.reshape(-1)[-2:]]
        lead = [int(v) for v in sizes.reshape(-1)[1:-2]]
    elif scales is not None and scales.size:
        size = [int(math.floor(d * float(f))) for d, f in zip(x.shape[1:], scales.reshape(-1)[-2:])]
        lead = [1 if float(f) == 1.0 else 0 for f in scales.reshape(-1)[1:-2]]
    else:
        raise ModelError(f"node '{_label(node)}' (Resize): neither scales nor sizes given")
    supported = ((mode == "nearest" and transform == "asymmetric" and nearest == "floor")
                 or (mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners")))
    if not supported or (scales is not None and scales.size and any(float(f) != 1.0 for f in scales.reshape(-1)[:2])):
        raise ModelError(f"unsupported ONNX operator 'Resize' (mode {mode}, coordinate_transformation_mode {transform}, "
                         f"nearest_mode {nearest}) in node '{_label(node)}'")
    b.set(node.output[0], b.emit("resize", [x], node.output[0],
                                 attrs={"size": tuple(size), "mode": "nearest" if mode == "nearest" else "linear",
                                        "align_corners": transform == "align_corners"}, label=_label(node)))


@_handles("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")
def _reduce(b: GraphBuilder, node, ins, attrs) -> None:
    op = {"ReduceSum": "reduce_sum", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max", "ReduceMin": "reduce_min"}
    b.set(node.output[0], _emit_reduce(b, node, ins[0], ins, attrs, op[node.op_type], node.output[0]))


def _emit_reduce(b: GraphBuilder, node, x: Var, ins, attrs, op: str, out: str) -> Var:
    """x reduced by `op` over the node's axes (attribute or constant input; none: every
    per-sample axis, or x itself with noop_with_empty_axes), as a node named `out`."""
    axes = attrs.get("axes")
    if axes is None:
        found = _constant_input(b, node, ins, 1, "the axes")
        axes = None if found is None else [int(v) for v in found.reshape(-1)]
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(0 if x.explicit else 1, x.rank))  # all axes: only the per-sample ones may go
    axes = sorted(_batched_axis(a, x, node) for a in axes)
    return b.emit(op, [x], out, attrs={"axes": axes, "keepdims": bool(attrs.get("keepdims", 1))}, label=_label(node))


@_handles("LayerNormalization")
def _layernorm(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    axis = _batched_axis(attrs.get("axis", -1), x, node)
    scale, bias = _constant_input(b, node, ins, 1, "the scale"), _constant_input(b, node, ins, 2, "the bias")
    if len(node.output) > 1 and any(b.consumers.get(o) for o in node.output[1:] if o):
        raise ModelError(f"node '{_label(node)}' (LayerNormalization): its mean/inverse-deviation outputs are used")
    b.set(node.output[0], b.emit("layernorm", [x], node.output[0],
                                 {"scale": None if scale is None else b.param(scale, x, node),
                                  "bias": None if bias is None else b.param(bias, x, node)},
                                 {"axis": axis, "epsilon": float(attrs.get("epsilon", 1e-5))}, label=_label(node)))


@_handles("InstanceNormalization")
def _instancenorm(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    scale, bias = _constant_input(b, node, ins, 1, "the scale"), _constant_input(b, node, ins, 2, "the bias")
    b.set(node.output[0], b.emit("instancenorm", [x], node.output[0],
                                 {"scale": as_tensor(scale.reshape(-1)), "bias": as_tensor(bias.reshape(-1))},
                                 {"epsilon": float(attrs.get("epsilon", 1e-5))}, label=_label(node)))


def _emit_slice(b: GraphBuilder, node, x: Var, out: str, bounds: dict[int, tuple[int, int, int]]) -> Var:
    """x[..., start:end:step, ...] on per-sample axes (batched axis numbers as keys)."""
    axes = sorted(bounds)
    return b.emit("slice", [x], out, attrs={"axes": axes, "starts": [bounds[a][0] for a in axes],
                                             "ends": [bounds[a][1] for a in axes], "steps": [bounds[a][2] for a in axes]},
                  label=_label(node))


@_handles("Slice")
def _slice(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    if any(isinstance(v, Var) for v in ins[1:]):
        raise ModelError(f"node '{_label(node)}' (Slice): starts/ends/axes/steps must be constant")
    def ints(i, default):
        v = ins[i] if len(ins) > i and ins[i] is not None else None
        return [int(a) for a in b.const(v, node, "a slice bound").reshape(-1)] if v is not None else default
    starts, ends = ints(1, None), ints(2, None)
    axes = ints(3, list(range(len(starts))))
    steps = ints(4, [1] * len(starts))
    bounds = {}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + x.rank if axis < 0 else axis
        if x.explicit:
            axis += 1
        elif axis == 0:
            if start == 0 and end >= 2**31 - 1 and step == 1:
                continue  # the whole batch
            raise ModelError(f"node '{_label(node)}' (Slice): slicing the batch dimension is not supported")
        if step <= 0:
            raise ModelError(f"node '{_label(node)}' (Slice): step {step} is not supported (only positive steps)")
        size = x.shape[axis - 1]
        start, stop, _ = slice(start, end, step).indices(size)
        bounds[axis] = (start, max(stop, start), step)
    if all(bounds[a] == (0, x.shape[a - 1], 1) for a in bounds):
        b.set(node.output[0], x)
        return
    b.set(node.output[0], _emit_slice(b, node, x, node.output[0], bounds))


@_handles("Gather")
def _gather(b: GraphBuilder, node, ins, attrs) -> None:
    x, index = ins
    if isinstance(index, Var) or not isinstance(x, Var):
        raise ModelError(f"unsupported ONNX operator 'Gather' with input-dependent indices in node '{_label(node)}'")
    axis = _batched_axis(attrs.get("axis", 0), x, node)
    idx = b.const(index, node, "the indices").astype(np.int64)
    size = x.shape[axis - 1]
    flat = [int(i) + size if int(i) < 0 else int(i) for i in idx.reshape(-1)]
    if idx.ndim > 1 or not flat or flat != list(range(flat[0], flat[0] + len(flat))):
        raise ModelError(f"unsupported ONNX operator 'Gather' with non-contiguous indices in node '{_label(node)}'")
    out = _emit_slice(b, node, x, node.output[0] if idx.ndim == 1 else b.fresh(node.output[0] + "/slice"),
                      {axis: (flat[0], flat[0] + len(flat), 1)})
    if idx.ndim == 0:  # a scalar index drops the axis
        _reshape_to(b, node, out, [d for i, d in enumerate(out.shape) if i != axis - 1])
    else:
        b.set(node.output[0], out)


@_handles("Shape")
def _shape(b: GraphBuilder, node, ins, attrs) -> None:
    x = ins[0]
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    if x.explicit:  # one sample: its ONNX shape, batch slot 1 included
        b.set(node.output[0], Const.of(np.array(x.shape, dtype=np.int64)[start:end]))
        return
    worlds = [np.array([batch, *x.shape], dtype=np.int64)[start:end] for batch in WORLD_BATCH]
    b.set(node.output[0], Const(worlds[0], worlds[1]))


@_handles("Size")
def _size(b: GraphBuilder, node, ins, attrs) -> None:
    numel = int(np.prod(ins[0].shape)) if ins[0].shape else 1
    if ins[0].explicit:
        b.set(node.output[0], Const.of(np.array(numel)))
        return
    b.set(node.output[0], Const(np.array(WORLD_BATCH[0] * numel), np.array(WORLD_BATCH[1] * numel)))
