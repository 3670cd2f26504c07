"""The builder an ONNX graph is read with: values, the node emitter and constant folding.

Shared by the reader (`saferisk.models.onnx_reader`, which drives it) and the per-operator
handlers (`saferisk.models.onnx_ops`, which it calls): imports go reader -> ops -> builder.

Values: a `Var` is a tensor that depends on the input (internal name, per-sample shape); a
`Const` is a constant folded in two worlds where the batch size is WORLD_BATCH[0] and
WORLD_BATCH[1] (entries that differ between them are the batch size, see onnx_reader).

Per-sample reading (`per_sample=True`, for graphs that move or merge the batch dimension:
attention, batch_first RNNs): every value is read as the ONNX tensor of ONE sample, batch slot
of size 1 included wherever the graph moves it (`Var.explicit`); the graph's hidden batch axis
is then a new leading axis in front of it, so Transpose / Reshape / Concat / MatMul act on one
sample's full ONNX tensor. Spatial operators (conv, pooling, normalisation, pad, resize) see the
sample with its leading batch slot squeezed away. Constants fold in a single world (batch 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from saferisk.errors import ModelError
from saferisk.models.graph import Graph, Node, run_node

WORLD_BATCH = (2, 3)  # batch sizes of the two constant-folding worlds


# --------------------------------------------------------------------------- opset

def default_opset(model) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ModelError("ONNX model declares no default-domain opset")


# --------------------------------------------------------------------------- values

@dataclass
class Var:
    """A tensor that depends on the input: its internal name and per-sample shape; `explicit`
    when that shape is the ONNX tensor of one sample, batch slot included (per-sample reading)."""

    name: str
    shape: tuple[int, ...]
    explicit: bool = False

    @property
    def rank(self) -> int:  # the ONNX rank
        return len(self.shape) if self.explicit else len(self.shape) + 1


@dataclass
class Const:
    """A constant folded in the two batch worlds (the same array when batch-independent)."""

    a: np.ndarray
    b: np.ndarray

    @property
    def batch_dependent(self) -> bool:
        return self.a is not self.b and not (self.a.shape == self.b.shape and np.array_equal(self.a, self.b))

    @classmethod
    def of(cls, value) -> Const:
        arr = np.asarray(value)
        return cls(arr, arr)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))


def attr_text(value) -> str:
    """An ONNX string attribute (bytes) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def node_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def per_sample_input_shape(value_info, override) -> tuple[int, ...]:
    """The declared input shape without its batch dimension (or `override`, e.g. for symbolic sizes)."""
    if override is not None:
        return tuple(int(d) for d in override)
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) < 2:
        raise ModelError(f"input '{value_info.name}' has rank {len(dims)}; saferisk needs a batch dimension "
                         "first (pass input_shape= to give the per-sample shape)")
    shape = []
    for i, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            raise ModelError(f"input '{value_info.name}' dimension {i} is not a fixed size (a sequence length?); "
                             "pass input_shape= with the per-sample shape to audit")
        shape.append(int(dim.dim_value))
    return tuple(shape)


# --------------------------------------------------------------------------- builder

# a handler: (builder, ONNX node, resolved inputs, attributes) -> None (it binds the node's outputs)
Handler = Callable[["GraphBuilder", object, list, dict], None]


class GraphBuilder:
    def __init__(self, model, input_shape, output_name, per_sample: bool = False):
        import onnx

        self.per_sample = per_sample
        self.squeezing = False  # inside a spatial handler of the per-sample reading
        self.squeezed_of: dict[str, Var] = {}  # explicit (1, *s) var name -> its per-sample twin s
        self.explicit_of: dict[str, Var] = {}  # and back

        self.onnx = onnx
        self.model = model
        self.opset = default_opset(model)
        graph = model.graph
        init_names = {init.name for init in graph.initializer}
        self.values: dict[str, Var | Const] = {}
        for init in graph.initializer:
            self.values[init.name] = Const.of(onnx.numpy_helper.to_array(init))
        inputs = [i for i in graph.input if i.name not in init_names]
        if len(inputs) != 1:
            raise ModelError(f"the ONNX graph has {len(inputs)} inputs {[i.name for i in inputs]}; saferisk needs exactly one")
        self.input_name = inputs[0].name
        self.input_shape = per_sample_input_shape(inputs[0], input_shape)
        self.values[self.input_name] = Var(self.input_name, self.input_shape)
        outputs = [o.name for o in graph.output]
        if output_name is None:
            if len(outputs) != 1:
                raise ModelError(f"the ONNX graph has {len(outputs)} outputs {outputs}; pass output_name= to pick one")
            output_name = outputs[0]
        elif output_name not in outputs:
            raise ModelError(f"output '{output_name}' is not among the graph outputs {outputs}")
        self.output_onnx = output_name
        self.onnx_producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        self.consumers[output_name] = self.consumers.get(output_name, 0) + 1
        self.nodes: list[Node] = []
        self.producer: dict[str, Node] = {}
        self.names: set[str] = set(self.values)
        self.shapes: dict[str, tuple[int, ...]] = {self.input_name: self.input_shape}


    # ----- helpers
    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}#{k}"
        self.names.add(name)
        return name

    def emit(self, op: str, inputs: list[Var], out: str, params=None, attrs=None, label: str = "") -> Var:
        name = out if out not in self.names else self.fresh(out)
        self.names.add(name)
        node = Node(op, [v.name for v in inputs], name, dict(params or {}), dict(attrs or {}), label or name)
        try:
            with torch.no_grad():
                probe = run_node(node, [torch.zeros((1,) + v.shape) for v in inputs])
        except ModelError as exc:
            raise ModelError(f"node '{label or out}' ({op}): {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"node '{label or out}' ({op}) cannot run on per-sample shapes "
                             f"{[v.shape for v in inputs]}: {exc}") from None
        self.nodes.append(node)
        self.producer[name] = node
        self.shapes[name] = tuple(probe.shape) if op == "constant" else tuple(probe.shape[1:])
        return Var(name, self.shapes[name], explicit=self.per_sample and not self.squeezing)

    def const(self, c: Const, node, what: str) -> np.ndarray:
        if c.batch_dependent:
            raise ModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): {what} depends on the batch size")
        return c.a

    def param(self, arr: np.ndarray, x: Var, node) -> torch.Tensor:
        """A constant broadcast against batched x, as a per-sample tensor (leading batch 1 dropped)."""
        arr = np.asarray(arr)
        while arr.ndim > len(x.shape):
            if arr.shape[0] != 1:
                raise ModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): constant of shape "
                                 f"{arr.shape} would change the batch dimension of {x.shape}")
            arr = arr[0]
        return as_tensor(arr)

    def single_use(self, var: Var, onnx_name: str) -> bool:
        """Whether `var`, produced under `onnx_name` (no alias), is read by exactly one node."""
        return var.name == onnx_name and self.consumers.get(onnx_name, 0) == 1 and onnx_name != self.output_onnx

    # ----- folding
    def fold(self, node) -> None:
        from onnx.reference import ReferenceEvaluator

        ins = [self.values[n] if n else None for n in node.input]
        try:
            evaluator = ReferenceEvaluator(node, opsets={"": self.opset})
            feeds_a = {n: c.a for n, c in zip(node.input, ins) if n}
            out_a = evaluator.run(None, feeds_a)
            if any(c is not None and c.batch_dependent for c in ins):
                out_b = evaluator.run(None, {n: c.b for n, c in zip(node.input, ins) if n})
            else:
                out_b = out_a
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"constant node '{node.name or node.output[0]}' ({node.op_type}) could not be folded: {exc}") from None
        for name, va, vb in zip(node.output, out_a, out_b):
            if name:
                va = np.asarray(va)
                self.values[name] = Const(va, va if vb is va else np.asarray(vb))

    # ----- per-sample reading: the batch slot of spatial operators
    def squeeze_slot(self, var: Var, node) -> Var:
        """An explicit (1, *s) sample as the per-sample var s (for a spatial handler)."""
        if not var.explicit:
            return var
        if var.shape[:1] != (1,):
            raise ModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): its input {var.shape} does not "
                             "have the batch dimension first")
        if var.name not in self.squeezed_of:
            self.squeezing = True
            try:
                out = self.emit("reshape", [var], self.fresh(var.name + "/sample"),
                                attrs={"shape": list(var.shape[1:])}, label=node.name or node.output[0])
            finally:
                self.squeezing = False
            self.squeezed_of[var.name], self.explicit_of[out.name] = out, var
        return self.squeezed_of[var.name]

    def unsqueeze_slot(self, var: Var, node) -> Var:
        """A per-sample var s as the explicit sample (1, *s)."""
        if var.explicit:
            return var
        if var.name not in self.explicit_of:
            out = self.emit("reshape", [var], self.fresh(var.name + "/batch"), attrs={"shape": [1, *var.shape]},
                            label=node.name or node.output[0])
            self.explicit_of[var.name], self.squeezed_of[out.name] = out, var
        return self.explicit_of[var.name]

    def _run_squeezed(self, handler: Handler, node, ins: list) -> None:
        ins = [self.squeeze_slot(v, node) if isinstance(v, Var) else v for v in ins]
        self.squeezing = True
        try:
            handler(self, node, ins, node_attrs(node))
        finally:
            self.squeezing = False
        for name in node.output:
            value = self.values.get(name)
            if isinstance(value, Var):
                self.values[name] = self.unsqueeze_slot(value, node)

    # ----- main
    def build(self, handlers: dict[str, Handler], spatial: frozenset[str] = frozenset()) -> Graph:
        """The graph of the input path, each node converted by handlers[op_type] (in the
        per-sample reading, the `spatial` ones on the sample without its batch slot)."""
        if self.per_sample:
            first = Var(self.input_name, self.input_shape)
            self.values[self.input_name] = self.unsqueeze_slot(first, self.model.graph.node[0])
        for node in self.model.graph.node:
            ins = [self.values.get(n) if n else None for n in node.input]
            missing = [n for n, v in zip(node.input, ins) if n and v is None]
            if missing:
                raise ModelError(f"node '{node.name}' ({node.op_type}) reads undefined tensor(s) {missing}")
            if node.domain not in ("", "ai.onnx"):
                raise ModelError(f"unsupported ONNX operator '{node.domain}.{node.op_type}' in node '{node.name or node.output[0]}'")
            if not any(isinstance(v, Var) for v in ins):
                self.fold(node)
                continue
            handler = handlers.get(node.op_type)
            if handler is None:
                raise ModelError(f"unsupported ONNX operator '{node.op_type}' in node '{node.name or node.output[0]}' "
                                 f"(supported on the input path: {', '.join(sorted(handlers))})")
            if self.per_sample and node.op_type in spatial:
                self._run_squeezed(handler, node, ins)
            else:
                handler(self, node, ins, node_attrs(node))
        out = self.values.get(self.output_onnx)
        if not isinstance(out, Var):
            raise ModelError(f"graph output '{self.output_onnx}' does not depend on the input")
        if out.explicit:
            if out.shape[:1] != (1,):
                raise ModelError(f"graph output '{self.output_onnx}' of per-sample shape {out.shape} does not have "
                                 "the batch dimension first")
            out = self.squeeze_slot(out, self.model.graph.node[-1])
        nodes = _live_nodes(self.nodes, out.name)
        return Graph(self.input_name, out.name, self.input_shape, nodes)

    def set(self, onnx_name: str, value: Var | Const) -> None:
        self.values[onnx_name] = value


def _live_nodes(nodes: list[Node], output: str) -> list[Node]:
    needed, live = {output}, []
    for node in reversed(nodes):
        if node.output in needed:
            live.append(node)
            needed.update(node.inputs)
    return live[::-1]
