"""ONNX (any opset >= 7) -> saferisk's normalised `Graph` (op table in `saferisk.models.graph`).

Only the `onnx` package is used. Models below opset 13 are first upgraded with
`onnx.version_converter.convert_version(model, 13)` so that one set of operator semantics is read.

How the batch dimension is handled: the per-sample input shape is the declared input shape
without its first dimension; every node is checked to keep dim 0 as the batch, so the graph runs
on any batch size B even when the file declares batch 1 (VNN-COMP files do). Subgraphs that do not
depend on the input are constant-folded with `onnx.reference`; to recognise shape arithmetic on
the batch size (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`), each constant is folded in
two worlds where the batch size is 2 and 3: entries that differ between them are the batch size.
A Reshape whose target's first entry is the batch size, -1, 0 or 1 becomes a per-sample reshape.

Graphs that move or merge the batch dimension (attention's (T, B, E) layout and its B*heads
reshapes, batch_first RNNs around ONNX's time-major LSTM) are read per sample instead
(`per_sample=True`, see onnx_builder): every value is one sample's ONNX tensor, batch slot of
size 1 included. That reading cannot tell the batch slot from another size-1 axis, so its graph is
only used once it agrees with onnxruntime on a batch of different inputs
(`saferisk.models.load.read_forward`).

The per-operator conversions live in `saferisk.models.onnx_ops`, the builder they share (values,
node emitter, constant folding) in `saferisk.models.onnx_builder`.
"""

from __future__ import annotations

from pathlib import Path

from saferisk.errors import ModelError
from saferisk.models.graph import Graph
from saferisk.models.onnx_builder import GraphBuilder, default_opset
from saferisk.models.onnx_ops import HANDLERS, SPATIAL
from saferisk.models.onnx_rnn import RNN_OPS

MIN_OPSET = 7
READ_OPSET = 13  # models below this opset are upgraded to it before reading


# --------------------------------------------------------------------------- loading

def load_onnx_proto(source):
    """An ONNX ModelProto from a path, bytes or a ModelProto, with clear errors."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as exc:  # noqa: BLE001 - protobuf raises assorted errors
            raise ModelError(f"ONNX bytes could not be parsed: {exc}") from None
        what = "ONNX bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable ONNX file (truncated or corrupt?): {exc}") from None
        what = str(path)
    if not model.graph.node or not model.graph.output:
        raise ModelError(f"{what}: the ONNX graph is empty (truncated or corrupt file?)")
    return model


def upgrade_opset(model, target: int):
    """The model converted to opset `target` (no-op when it is already there)."""
    from onnx import version_converter

    current = default_opset(model)
    if current < MIN_OPSET:
        raise ModelError(f"ONNX opset {current} is not supported (need >= {MIN_OPSET})")
    if current == target:
        return model
    input_names = {i.name for i in model.graph.input}
    if model.ir_version < 4 and any(init.name not in input_names for init in model.graph.initializer):
        fixed = type(model)()
        fixed.CopyFrom(model)
        fixed.ir_version = 4  # IR 3 lists initializers as inputs; the converter insists on it
        model = fixed
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"could not convert the ONNX model from opset {current} to {target}: {exc}") from None


# --------------------------------------------------------------------------- public API

def unsupported_operators(source) -> list[tuple[str, str]]:
    """(op type, node name) of each node on the input path whose operator the reader has no
    handler for (the first node of each op type): what a user wrote ("LSTM"), not where the
    reader happened to stop."""
    model = load_onnx_proto(source)
    graph = model.graph
    constant = {init.name for init in graph.initializer}
    seen: dict[str, str] = {}
    for node in graph.node:
        if node.op_type in ("Shape", "Size") or all(not name or name in constant for name in node.input):
            constant.update(node.output)  # shapes fold to constants (per batch world)
            continue
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if node.domain not in ("", "ai.onnx") or (node.op_type not in HANDLERS and node.op_type not in RNN_OPS):
            seen.setdefault(op, node.name or node.output[0])
    return sorted(seen.items())


SHAPE_ONLY_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast")


def output_meaning(source) -> tuple[str | None, int]:
    """(final activation, output rank) of an ONNX model's (first) output: the activation is
    'softmax', 'log_softmax' or 'sigmoid' when the output is one of them (through shape-only
    ops), else None; the rank counts the batch dimension (> 2: dense per-position outputs)."""
    model = load_onnx_proto(source)
    graph = model.graph
    name = graph.output[0].name
    rank = len(graph.output[0].type.tensor_type.shape.dim)
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(name)
    while node is not None and node.op_type in SHAPE_ONLY_OPS and node.input:
        node = producers.get(node.input[0])
    kinds = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
    return (kinds.get(node.op_type) if node is not None else None), rank


def describe_reader_error(source, error: Exception) -> str:
    """Why the graph reader refused a model, naming unsupported operators first."""
    try:
        gaps = unsupported_operators(source)
    except ModelError:
        gaps = []
    if gaps:
        listed = ", ".join(f"{op} (node '{name}')" for op, name in gaps)
        return f"the graph reader does not support {listed}"
    return f"the graph reader cannot represent it: {error}"


def read_onnx(source, *, input_shape=None, output_name: str | None = None, per_sample: bool = False) -> Graph:
    """Read an ONNX model (path, bytes or ModelProto) into a normalised `Graph`.

    `input_shape` (per sample, no batch) overrides the declared one (needed when it is symbolic);
    `output_name` picks one output of a multi-output graph; `per_sample` reads every value as one
    sample's ONNX tensor (see the module docstring: check the result against onnxruntime).
    """
    model = load_onnx_proto(source)
    if default_opset(model) < READ_OPSET:
        model = upgrade_opset(model, READ_OPSET)
    return GraphBuilder(model, input_shape, output_name, per_sample=per_sample).build({**HANDLERS, **RNN_OPS}, SPATIAL)
