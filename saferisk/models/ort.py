"""Forward passes through onnxruntime: the evaluator for any ONNX graph saferisk's reader cannot represent.

The paper's method needs forward passes only, so a model whose operators the torch graph reader
(`saferisk.models.onnx_reader`) does not cover (CumSum, TopK, loops, a custom domain, a graph that
mixes the samples of a batch) is still
searched: the estimate and the witness come from batched onnxruntime runs; certified bounds, which
walk the internal graph, are then unavailable and the result says why (`Model.graph_error`).

    runtime = OnnxRuntimeForward(onnx_bytes)      # per-sample input shape from the file
    z = runtime(x)                                # x (B, *input_shape) float -> (B, m) float64

Files that fix the batch dimension (VNN-COMP files declare batch 1) are rewritten with a symbolic
batch dimension; when the graph itself hard-codes the batch (a Reshape to [1, -1]), the rewritten
file disagrees with the original on a probe batch and rows are run one at a time instead.
Sessions are deterministic for a fixed thread count: `intra_op_num_threads` follows torch's.
"""

from __future__ import annotations

import numpy as np
import torch

from saferisk.errors import ModelError
from saferisk.models.onnx_builder import per_sample_input_shape

PROBE_ROWS = 3  # rows of the probe batch that checks a rewritten batch dimension
PROBE_TOLERANCE = 1e-5  # relative: batched and row-by-row runs of one graph agree to float32 rounding


def _session(onnx_bytes: bytes, device: torch.device):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    try:
        return onnxruntime.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load the model: {' '.join(str(exc).split())[:300]}") from None


def _dynamic_batch(proto) -> tuple[bytes, bool]:
    """The model with dim 0 of its input and outputs symbolic; (bytes, whether anything changed)."""
    changed = False
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
            changed = True
    if changed:
        del proto.graph.value_info[:]  # stale fixed-batch shapes of intermediate tensors
    return proto.SerializeToString(), changed


class OnnxRuntimeForward:
    """Batched forward passes of one ONNX graph (one input, one chosen output) through onnxruntime."""

    def __init__(self, onnx_bytes: bytes, *, input_shape=None, output_name: str | None = None,
                 device: torch.device | str = "cpu"):
        import onnx
        from onnx.helper import tensor_dtype_to_np_dtype

        self.onnx_bytes = bytes(onnx_bytes)
        self.device = torch.device(device)
        proto = onnx.load_from_string(self.onnx_bytes)
        init_names = {init.name for init in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in init_names]
        if len(inputs) != 1:
            raise ModelError(f"the ONNX graph has {len(inputs)} inputs {[i.name for i in inputs]}; saferisk needs exactly one")
        declared = inputs[0].type.tensor_type
        self.input_name = inputs[0].name
        self.input_dtype = np.dtype(tensor_dtype_to_np_dtype(declared.elem_type))
        if self.input_dtype.kind != "f":
            raise ModelError(f"input '{self.input_name}' holds {self.input_dtype} values: a radius over integer "
                             "inputs (token ids, embedding indices) is not defined; audit a model that takes the "
                             "embedded floats instead")
        self.input_shape = per_sample_input_shape(inputs[0], input_shape)
        outputs = [o.name for o in proto.graph.output]
        if output_name is None and len(outputs) != 1:
            raise ModelError(f"the ONNX graph has {len(outputs)} outputs {outputs}; pass output_name= to pick one")
        if output_name is not None and output_name not in outputs:
            raise ModelError(f"output '{output_name}' is not among the graph outputs {outputs}")
        self.output_name = output_name or outputs[0]
        self.op_types = sorted({node.op_type for node in proto.graph.node})
        dynamic_bytes, rewritten = _dynamic_batch(proto)
        self.row_by_row = False
        self._session = _session(dynamic_bytes if rewritten else self.onnx_bytes, self.device)
        if rewritten and not self._batch_agrees():
            self._session = _session(self.onnx_bytes, self.device)
            self.row_by_row = True

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self._session.run([self.output_name], {self.input_name: x.astype(self.input_dtype, copy=False)})[0]
        return np.asarray(out).reshape(x.shape[0], -1)

    def _batch_agrees(self) -> bool:
        probe = np.random.default_rng(0).standard_normal((PROBE_ROWS, *self.input_shape)).astype(self.input_dtype)
        try:
            batched = self._run(probe).astype(np.float64)
        except Exception:  # noqa: BLE001 - the graph hard-codes its batch size
            return False
        rows = np.concatenate([self._run(probe[i:i + 1]) for i in range(PROBE_ROWS)]).astype(np.float64)
        scale = max(1.0, float(np.nanmax(np.abs(rows)))) if rows.size else 1.0
        return batched.shape == rows.shape and bool(np.allclose(batched, rows, atol=PROBE_TOLERANCE * scale,
                                                                 rtol=0, equal_nan=True))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (B, m) for inputs (B, *input_shape); float64 copies of what the graph computes."""
        x = np.ascontiguousarray(x)
        if x.shape[0] == 0:
            return np.zeros((0, self.n_outputs))
        if self.row_by_row:
            return np.concatenate([self._run(x[i:i + 1]) for i in range(x.shape[0])]).astype(np.float64)
        return self._run(x).astype(np.float64)

    @property
    def n_outputs(self) -> int:
        return int(self._run(np.zeros((1, *self.input_shape), dtype=self.input_dtype)).shape[1])

    def to(self, device: torch.device | str) -> "OnnxRuntimeForward":
        """The same graph on another device (the CUDA provider when onnxruntime has one, else the CPU)."""
        device = torch.device(device)
        if device != self.device:
            return OnnxRuntimeForward(self.onnx_bytes, input_shape=self.input_shape, output_name=self.output_name,
                                      device=device)
        return self

    @property
    def provider(self) -> str:
        return self._session.get_providers()[0]
