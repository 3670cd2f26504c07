"""Model intake: read any supported format into saferisk's one internal graph.

The names below load their modules on first use (PEP 562): `saferisk.models.formats` alone (what
the workflow's config checks read) does not import torch."""

from typing import TYPE_CHECKING

from saferisk.lazy import lazy_package

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
    from saferisk.models.graph import Graph, GraphModule, Node
    from saferisk.models.model import Model

_EXPORTS = {"Graph": "graph", "GraphModule": "graph", "Node": "graph", "Model": "model"}
__all__ = ["Graph", "GraphModule", "Node", "Model", "load_model"]


def load_model(path, device=None, **kwargs):
    """Load a model file (ONNX, TorchScript, torch.export .pt2) into a `Model`."""
    from saferisk.models.load import load_model as _load

    return _load(path, device=device, **kwargs)


__getattr__, __dir__ = lazy_package(__name__, _EXPORTS, globals())
