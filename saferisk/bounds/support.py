"""What saferisk can do with a model, found before any job runs (`saferisk validate-config`):
which evaluator runs it and whether certified bounds cover its graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from saferisk.bounds.engine import BoundEngine, UnsupportedGraph
from saferisk.models.load import load_model


@dataclass(frozen=True)
class ModelSupport:
    """evaluator: 'torch' (saferisk's graph: gradients, bounds where supported) or 'onnxruntime'
    (forward passes only); bounds_reason: why certified bounds are unavailable (None: available)."""

    evaluator: str
    bounds_reason: str | None

    def describe(self) -> str:
        if self.evaluator == "onnxruntime":
            return f"onnxruntime evaluator (estimate and witness by forward passes; no certified bound: {self.bounds_reason})"
        if self.bounds_reason:
            return f"saferisk graph (gradients); no certified bound: {self.bounds_reason}"
        return "saferisk graph (gradients, certified bounds)"


def model_support(path: str | Path, *, format: str | None = None, factory: str | None = None,
                  factory_kwargs: dict | None = None, input_shape=None) -> ModelSupport:
    """Load the model (ModelError when nothing can run it) and try to prepare its bound engine."""
    model = load_model(path, format=format, factory=factory, factory_kwargs=factory_kwargs, input_shape=input_shape)
    if model.graph is None:
        return ModelSupport("onnxruntime", model.graph_error)
    try:
        BoundEngine(model.graph)
    except UnsupportedGraph as exc:
        return ModelSupport("torch", str(exc))
    return ModelSupport("torch", None)
