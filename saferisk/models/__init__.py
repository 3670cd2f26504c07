"""Model intake: read any supported format into saferisk's one internal graph."""

from saferisk.models.graph import Graph, GraphModule, Node
from saferisk.models.model import Model

__all__ = ["Graph", "GraphModule", "Node", "Model", "load_model"]


def load_model(path, device=None, **kwargs):
    """Load a model file (ONNX, TorchScript, torch.export .pt2) into a `Model`."""
    from saferisk.models.load import load_model as _load

    return _load(path, device=device, **kwargs)
