"""ONNX LSTM / GRU / RNN -> the normalised graph, unrolled over the time steps.

Each recurrent node becomes, per direction and step t, the ONNX equations written with graph ops
the bounds already handle (linear, slice, add, mul of two variables, sigmoid, tanh, relu), so a
recurrent classifier gets gradients and certified bounds like any feed-forward net. Gate order and
equations as in the ONNX operator specification (f = sigmoid, g = h = tanh by default):

  LSTM (gates i, o, f, c):  i = f(x Wi + h Ri + bi), o = f(...), f_t = f(...), c~ = g(...)
                            C_t = f_t * C_{t-1} + i * c~,  H_t = o * h(C_t)
  GRU (gates z, r, h):      z = f(x Wz + h Rz + bz), r = f(x Wr + h Rr + br)
                            h~ = g(x Wh + r * (h Rh + Rbh) + Wbh)   (linear_before_reset = 1, torch)
                            h~ = g(x Wh + (r * h) Rh + Rbh + Wbh)   (linear_before_reset = 0)
                            H_t = (1 - z) * h~ + z * H_{t-1}
  RNN:                      H_t = f(x W + h R + Wb + Rb)

The input projections of all steps are one linear node; a constant initial state (zeros, as torch
exports it) folds into the first step's biases. The handlers work in the per-sample reading
(`saferisk.models.onnx_builder`: the batch slot of X is explicit, of size 1): torch's time-major
export transposes a batch_first input, which only that reading represents. Unsupported
attributes (clip, input_forget, peepholes, custom activations, variable sequence lengths) are
errors naming the operator.
"""

from __future__ import annotations

import numpy as np
import torch

from saferisk.errors import ModelError
from saferisk.models.onnx_builder import Const, GraphBuilder, Handler, Var, as_tensor, attr_text

Value = Var | np.ndarray  # an input-dependent tensor, or a constant (float64) of the same per-sample shape

_ACTIVATIONS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu"}
_NUMPY = {"sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0)}
_DEFAULTS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


class _Cell:
    """Emits the equations of one recurrent node on values that are Vars or constants."""

    def __init__(self, b: GraphBuilder, node):
        self.b, self.node = b, node
        self.label = node.name or node.output[0]

    def fresh(self, what: str) -> str:
        return self.b.fresh(f"{self.node.output[0] or self.label}/{what}")

    def emit(self, op: str, inputs: list[Var], what: str, params=None, attrs=None) -> Var:
        return self.b.emit(op, inputs, self.fresh(what), params, attrs, label=self.label)

    def add(self, x: Value, y: Value) -> Value:
        if isinstance(x, Var) and isinstance(y, Var):
            return self.emit("add", [x, y], "add")
        if not isinstance(x, Var) and not isinstance(y, Var):
            return x + y
        var, c = (x, y) if isinstance(x, Var) else (y, x)
        if not np.any(c):
            return var
        return self.emit("affine", [var], "shift", {"scale": None, "shift": self.b.param(c, var, self.node)})

    def mul(self, x: Value, y: Value) -> Value:
        if isinstance(x, Var) and isinstance(y, Var):
            return self.emit("mul", [x, y], "mul")
        if not isinstance(x, Var) and not isinstance(y, Var):
            return x * y
        var, c = (x, y) if isinstance(x, Var) else (y, x)
        return self.emit("affine", [var], "scale", {"scale": self.b.param(c, var, self.node), "shift": None})

    def one_minus(self, x: Value) -> Value:
        if not isinstance(x, Var):
            return 1.0 - x
        return self.emit("affine", [x], "one_minus", {"scale": torch.tensor(-1.0), "shift": torch.tensor(1.0)})

    def act(self, op: str, x: Value) -> Value:
        return self.emit(op, [x], op) if isinstance(x, Var) else _NUMPY[op](x)

    def linear(self, x: Value, weight: np.ndarray, bias: np.ndarray | None) -> Value:
        """x @ weight.T + bias."""
        if not isinstance(x, Var):
            return x @ weight.T + (0.0 if bias is None else bias)
        return self.emit("linear", [x], "linear", {"weight": as_tensor(weight),
                                                    "bias": None if bias is None else as_tensor(bias)})

    def gate(self, x: Value, k: int, hidden: int) -> Value:
        """Gate k of the last axis (blocks of `hidden`)."""
        if not isinstance(x, Var):
            return x[..., k * hidden:(k + 1) * hidden]
        return self.emit("slice", [x], f"gate{k}", attrs={"axes": [len(x.shape)], "starts": [k * hidden],
                                                           "ends": [(k + 1) * hidden], "steps": [1]})

    def step_input(self, projected: Var, t: int, time_axis: int) -> Var:
        """Step t of the projected inputs (T, 1, G) or (1, T, G), as (1, G)."""
        one = self.emit("slice", [projected], f"x{t}", attrs={"axes": [time_axis + 1], "starts": [t], "ends": [t + 1],
                                                               "steps": [1]})
        return self.emit("reshape", [one], f"x{t}/flat", attrs={"shape": [1, projected.shape[-1]]})

    def stack(self, parts: list[Var], shape: list[int], axis: int, what: str) -> Var:
        """Each (1, H) part reshaped to `shape`, concatenated along the (batched) `axis`."""
        lifted = [self.emit("reshape", [p], f"{what}/part", attrs={"shape": shape}) for p in parts]
        return lifted[0] if len(lifted) == 1 else self.emit("concat", lifted, what, attrs={"axis": axis})


def _constant(b: GraphBuilder, node, ins, index: int, what: str) -> np.ndarray | None:
    value = ins[index] if len(ins) > index else None
    if value is None:
        return None
    if isinstance(value, Var):
        raise ModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): {what} must not depend on the input")
    return b.const(value, node, what).astype(np.float64)


def _recurrent(b: GraphBuilder, node, ins, attrs) -> None:
    op, label = node.op_type, node.name or node.output[0]
    x = ins[0]
    if not isinstance(x, Var) or not x.explicit:
        raise ModelError(f"node '{label}' ({op}): recurrent layers are read per sample (its input is not the "
                         "time-major sample this reader expects)")
    weights, recurrence = _constant(b, node, ins, 1, "W"), _constant(b, node, ins, 2, "R")
    bias = _constant(b, node, ins, 3, "B")
    lengths = ins[4] if len(ins) > 4 else None
    initial = [_constant(b, node, ins, 5, "initial_h"), _constant(b, node, ins, 6, "initial_c") if op == "LSTM" else None]
    if op == "LSTM" and len(ins) > 7 and ins[7] is not None:
        raise ModelError(f"node '{label}' (LSTM): peephole weights (input P) are not supported")
    unsupported = [a for a in ("clip", "activation_alpha", "activation_beta") if a in attrs]
    if attrs.get("input_forget", 0):
        unsupported.append("input_forget")
    if unsupported:
        raise ModelError(f"node '{label}' ({op}): attribute(s) {', '.join(unsupported)} are not supported")
    layout = int(attrs.get("layout", 0))
    time_axis = 1 if layout else 0
    steps, slot = (x.shape[1], x.shape[0]) if layout else (x.shape[0], x.shape[1])
    if len(x.shape) != 3 or slot != 1:
        raise ModelError(f"node '{label}' ({op}): input of per-sample shape {x.shape} is not (steps, batch, features)")
    if lengths is not None:
        if isinstance(lengths, Var) or np.any(np.asarray(b.const(lengths, node, "sequence_lens")) != steps):
            raise ModelError(f"node '{label}' ({op}): sequences shorter than the input (sequence_lens) are not supported")
    hidden = int(attrs["hidden_size"])
    direction = attr_text(attrs.get("direction", b"forward"))
    directions = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if directions is None:
        raise ModelError(f"node '{label}' ({op}): direction '{direction}' is not supported")
    names = [attr_text(a) for a in attrs.get("activations", [])] or list(_DEFAULTS[op]) * len(directions)
    if any(n not in _ACTIVATIONS for n in names) or len(names) != len(_DEFAULTS[op]) * len(directions):
        raise ModelError(f"node '{label}' ({op}): activations {names} are not supported "
                         f"(supported: {', '.join(_ACTIVATIONS)})")
    cell = _Cell(b, node)
    outputs = []  # per direction: (hidden states in time order, last hidden, last cell)
    for d, reverse in enumerate(directions):
        acts = [_ACTIVATIONS[n] for n in names[d * len(_DEFAULTS[op]):(d + 1) * len(_DEFAULTS[op])]]
        gates = _GATES[op] * hidden
        w_bias = np.zeros(gates) if bias is None else bias[d][:gates]
        r_bias = np.zeros(gates) if bias is None else bias[d][gates:]
        h = np.zeros((1, hidden)) if initial[0] is None else initial[0][d]
        c = np.zeros((1, hidden)) if initial[1] is None else initial[1][d]
        # the input projections of every step at once (GRU keeps the recurrent biases apart)
        projected = cell.linear(x, weights[d], w_bias if op == "GRU" else w_bias + r_bias)
        states: dict[int, Value] = {}
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            xt = cell.step_input(projected, t, time_axis)
            if op == "LSTM":
                pre = cell.add(xt, cell.linear(h, recurrence[d], None))
                i, o, f, g = (cell.gate(pre, k, hidden) for k in range(4))
                i, o, f = cell.act(acts[0], i), cell.act(acts[0], o), cell.act(acts[0], f)
                c = cell.add(cell.mul(f, c), cell.mul(i, cell.act(acts[1], g)))
                h = cell.mul(o, cell.act(acts[2], c))
            elif op == "GRU":
                rz = cell.linear(h, recurrence[d][: 2 * hidden], r_bias[: 2 * hidden])
                z = cell.act(acts[0], cell.add(cell.gate(xt, 0, hidden), cell.gate(rz, 0, hidden)))
                r = cell.act(acts[0], cell.add(cell.gate(xt, 1, hidden), cell.gate(rz, 1, hidden)))
                rh, rbh = recurrence[d][2 * hidden:], r_bias[2 * hidden:]
                if attrs.get("linear_before_reset", 0):
                    recurrent = cell.mul(r, cell.linear(h, rh, rbh))
                else:
                    recurrent = cell.linear(cell.mul(r, h), rh, rbh)
                candidate = cell.act(acts[1], cell.add(cell.gate(xt, 2, hidden), recurrent))
                h = cell.add(cell.mul(cell.one_minus(z), candidate), cell.mul(z, h))
            else:
                h = cell.act(acts[0], cell.add(xt, cell.linear(h, recurrence[d], None)))
            states[t] = h
        outputs.append(([states[t] for t in range(steps)], h, c))
    _bind_outputs(b, node, cell, outputs, layout)


def _bind_outputs(b: GraphBuilder, node, cell: _Cell, outputs, layout: int) -> None:
    """Y (T, D, 1, H) [layout 1: (1, T, D, H)], Y_h and Y_c (D, 1, H) [(1, D, H)], where read."""
    hidden = outputs[0][1].shape[-1]
    wanted = [bool(name) and b.consumers.get(name, 0) > 0 for name in node.output]
    if len(wanted) > 0 and wanted[0]:
        per_direction = [cell.stack(states, [1, 1, 1, hidden], 2 if layout else 1, "Y") for states, _, _ in outputs]
        y = per_direction[0] if len(per_direction) == 1 else \
            cell.emit("concat", per_direction, "Y/directions", attrs={"axis": 3 if layout else 2})
        b.set(node.output[0], y)
    for index in (1, 2):
        if len(wanted) > index and wanted[index]:
            last = [out[index] for out in outputs]
            if not all(isinstance(v, Var) for v in last):
                raise ModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): output {index} does not "
                                 "depend on the input")
            b.set(node.output[index], cell.stack(last, [1, 1, hidden], 2 if layout else 1, f"Y{index}"))
    for name, used in zip(node.output, wanted):
        if name and not used:
            b.set(name, Const.of(np.zeros(0)))  # never read


RNN_OPS: dict[str, Handler] = {op: _recurrent for op in ("LSTM", "GRU", "RNN")}
