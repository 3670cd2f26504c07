"""A loaded model: the internal graph plus a torch module that runs it on a device."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from saferisk.models.graph import Graph, GraphModule


@dataclass
class Model:
    """A network used only through forward passes (and, for bounds, through its graph).

    input_shape is per sample; `forward_flat` takes (B, n_inputs) rows, the layout every
    search and bound in saferisk works in, and returns (B, n_outputs) float outputs.
    """

    graph: Graph
    name: str = "model"
    sha256: str = ""
    output_kind: str = "logits"  # logits | probabilities | regression
    decision: str = "argmax"  # argmax | argmin
    metadata: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        self.module = GraphModule(self.graph).eval()
        self.to(self.device)  # one placement path (dtype, and TF32 off on CUDA)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.input_shape)

    @property
    def n_inputs(self) -> int:
        return self.graph.n_inputs

    def to(self, device: torch.device | str) -> "Model":
        self.device = torch.device(device)
        if self.device.type == "cuda":
            # TF32 convolutions (cuDNN's default on Ampere and later) round to ~1e-3: witnesses
            # and re-checks assume float32 inference (~1e-6) like the CPU's
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.module = self.module.to(self.device, self.dtype)
        return self

    @torch.no_grad()
    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a batch of flat inputs (B, n_inputs) -> (B, n_outputs)."""
        x = x.to(self.device, self.dtype)
        return self.module(x.reshape(x.shape[0], *self.input_shape))

    def forward_flat_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Like forward_flat but keeps the autograd graph (for gradient-guided starts)."""
        x = x.to(self.device, self.dtype)
        return self.module(x.reshape(x.shape[0], *self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(self.forward_flat(torch.zeros(1, self.n_inputs)).shape[1])
