"""A loaded model: the internal graph plus a torch module that runs it on a device, or, for a
graph the reader cannot represent, onnxruntime (`saferisk.models.ort`) running the ONNX file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from saferisk.models.graph import Graph, GraphModule

EVALUATOR_TORCH = "torch"
EVALUATOR_ONNXRUNTIME = "onnxruntime"
# memory for the activations of one forward pass: larger batches run in chunks (the same rows,
# results per row as in any batch of that size); onnxruntime, whose activation sizes are unknown
# here, is charged ORT_ACTIVATION_FACTOR x the input size per row
FORWARD_MEMORY_BYTES = 1 << 30
ORT_ACTIVATION_FACTOR = 64
TIMING_ROWS = 256  # rows of the batch both runtimes are timed on (poll_evaluator: fastest)
TIMING_REPEATS = 3


@dataclass
class Model:
    """A network used only through forward passes (and, for bounds, through its graph).

    input_shape is per sample; `forward_flat` takes (B, n_inputs) rows, the layout every
    search and bound in saferisk works in, and returns (B, n_outputs) float outputs.
    With `graph` None the model runs through `runtime` (onnxruntime): forward passes only, no
    gradients and no certified bounds; `graph_error` says why the graph reader refused it.
    """

    graph: Graph | None
    name: str = "model"
    sha256: str = ""
    output_kind: str = "logits"  # logits | probabilities | regression
    decision: str = "argmax"  # argmax | argmin
    metadata: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    runtime: object | None = None  # saferisk.models.ort.OnnxRuntimeForward when graph is None
    graph_error: str = ""
    onnx_bytes: bytes | None = field(default=None, repr=False)  # the ONNX file the graph was read from
    onnx_output: str | None = None  # its output the graph computes (None: the only one)

    def __post_init__(self) -> None:
        if self.graph is None and self.runtime is None:
            raise ValueError("a Model needs a graph or an onnxruntime runtime")
        self._max_rows: int | None = None
        self._reference = None  # OnnxRuntimeForward of onnx_bytes, made on first use
        self._poll_timings: dict[str, float] | None = None  # seconds per row, per runtime (fastest)
        self.module = GraphModule(self.graph).eval() if self.graph is not None else None
        self.to(self.device)  # one placement path (dtype, and TF32 off on CUDA)

    @property
    def evaluator(self) -> str:
        """Which code computes the forward passes: 'torch' (saferisk's graph) or 'onnxruntime'."""
        return EVALUATOR_TORCH if self.graph is not None else EVALUATOR_ONNXRUNTIME

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.input_shape if self.graph is not None else self.runtime.input_shape)

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape, dtype=np.int64))

    def to(self, device: torch.device | str) -> "Model":
        self.device = torch.device(device)
        if self.device.type == "cuda":
            # TF32 convolutions (cuDNN's default on Ampere and later) round to ~1e-3: witnesses
            # and re-checks assume float32 inference (~1e-6) like the CPU's
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        if self.module is not None:
            self.module = self.module.to(self.device, self.dtype)
        else:
            self.runtime = self.runtime.to(self.device)
        return self

    @property
    def max_forward_rows(self) -> int:
        """Rows per forward pass within FORWARD_MEMORY_BYTES of live activations."""
        if self._max_rows is None:
            if self.module is not None:
                per_row = self.module.peak_live_numel() * torch.finfo(self.dtype).bits // 8
            else:
                per_row = self.n_inputs * ORT_ACTIVATION_FACTOR * 4
            self._max_rows = max(1, FORWARD_MEMORY_BYTES // max(1, per_row))
        return self._max_rows

    @torch.no_grad()
    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a batch of flat inputs (B, n_inputs) -> (B, n_outputs), in chunks of at
        most `max_forward_rows` rows."""
        if x.shape[0] > self.max_forward_rows:
            return torch.cat([self._forward_flat(part) for part in torch.split(x, self.max_forward_rows)])
        return self._forward_flat(x)

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is None:
            return torch.from_numpy(self.runtime(self._numpy_rows(x))).to(self.device, self.dtype)
        return self.module(self._batched(x))

    def forward_flat_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Like forward_flat but keeps the autograd graph (for gradient-guided starts).

        Raises RuntimeError for a model that runs through onnxruntime (searches then stay black-box)."""
        if self.module is None:
            raise RuntimeError(f"no gradients: model '{self.name}' runs through onnxruntime")
        return self.module(self._batched(x))

    def _batched(self, x: torch.Tensor) -> torch.Tensor:
        """Flat rows (B, n) on the model's device and dtype, shaped (B, *input_shape)."""
        x, shape = x.to(self.device, self.dtype), self.input_shape
        return x if x.shape[1:] == shape else x.reshape(x.shape[0], *shape)

    def _numpy_rows(self, x: torch.Tensor) -> np.ndarray:
        """Flat rows (B, n) as the float64 array (B, *input_shape) onnxruntime is fed from."""
        return x.detach().to("cpu", torch.float64).numpy().reshape(x.shape[0], *self.input_shape)

    def reference_outputs(self, x: torch.Tensor) -> torch.Tensor | None:
        """Outputs (B, m) float64 of the same ONNX file in onnxruntime, the independent runtime
        that re-checks witnesses found with saferisk's graph; None when there is no ONNX file or
        onnxruntime is already the evaluator."""
        if self.graph is None or self.onnx_bytes is None:
            return None
        if self._reference is None:
            from saferisk.models.ort import OnnxRuntimeForward

            self._reference = OnnxRuntimeForward(self.onnx_bytes, input_shape=self.input_shape,
                                                 output_name=self.onnx_output)
        return torch.from_numpy(self._reference(self._numpy_rows(x)))

    def poll_forward(self, choice: str = "model") -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
        """(the no-gradient forward for derivative-free polls, the runtime's name).

        choice "model": forward_flat; "onnxruntime": the same ONNX file in onnxruntime (float32
        inference like the graph's; the outputs agree to float32 rounding); "fastest": whichever
        of the two ran a batch of TIMING_ROWS rows faster here (best of TIMING_REPEATS, measured
        once per model): fast, but the choice depends on the machine, so results may differ in
        the last float bits between machines (witnesses are re-checked by both runtimes anyway).
        """
        if choice == "model" or self.graph is None or self.onnx_bytes is None:
            return self.forward_flat, self.evaluator
        if choice == "fastest":
            timings = self.poll_timings()
            if timings[EVALUATOR_TORCH] <= timings[EVALUATOR_ONNXRUNTIME]:
                return self.forward_flat, self.evaluator
        return self._onnxruntime_forward, EVALUATOR_ONNXRUNTIME

    def _onnxruntime_forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = max(1, FORWARD_MEMORY_BYTES // max(1, self.n_inputs * ORT_ACTIVATION_FACTOR * 4))
        return torch.cat([self.reference_outputs(part).to(self.device, self.dtype) for part in torch.split(x, rows)])

    def poll_timings(self) -> dict[str, float]:
        """Seconds per row of each runtime on one batch of TIMING_ROWS rows (best of TIMING_REPEATS)."""
        if self._poll_timings is None:
            x = torch.rand(TIMING_ROWS, self.n_inputs, generator=torch.Generator().manual_seed(0)).to(self.device, self.dtype)
            self._poll_timings = {}
            for name, fn in ((EVALUATOR_TORCH, self.forward_flat), (EVALUATOR_ONNXRUNTIME, self._onnxruntime_forward)):
                fn(x)  # warm-up (sessions, allocations)
                best = float("inf")
                for _ in range(TIMING_REPEATS):
                    start = time.perf_counter()
                    fn(x)
                    best = min(best, time.perf_counter() - start)
                self._poll_timings[name] = best / TIMING_ROWS
        return self._poll_timings

    @property
    def bounds_unavailable(self) -> str | None:
        """Why certified bounds cannot run on this model at all (None: they can try)."""
        return None if self.graph is not None else f"{self.graph_error} (searched through onnxruntime)"

    @property
    def n_outputs(self) -> int:
        return int(self.forward_flat(torch.zeros(1, self.n_inputs)).shape[1])


def recheck_outputs(model, x: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """(outputs of x in the independent runtime or None, the runtimes that re-check x): what a
    witness or counterexample must also violate. Works on wrappers without a reference too."""
    evaluator = getattr(model, "evaluator", EVALUATOR_TORCH)
    z_ref = model.reference_outputs(x) if hasattr(model, "reference_outputs") else None
    return z_ref, (evaluator if z_ref is None else f"{evaluator}+{EVALUATOR_ONNXRUNTIME}")
