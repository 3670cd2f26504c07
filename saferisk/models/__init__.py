"""Model intake: read any supported format into saferisk's one internal graph.

The names below load their modules on first use (PEP 562): `saferisk.models.formats` alone (what
the workflow's config checks read) does not import torch."""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
    from saferisk.models.graph import Graph, GraphModule, Node
    from saferisk.models.model import Model

_EXPORTS = {"Graph": "graph", "GraphModule": "graph", "Node": "graph", "Model": "model"}
__all__ = ["Graph", "GraphModule", "Node", "Model", "load_model"]


def load_model(path, device=None, **kwargs):
    """Load a model file (ONNX, TorchScript, torch.export .pt2) into a `Model`."""
    from saferisk.models.load import load_model as _load

    return _load(path, device=device, **kwargs)


def __getattr__(name):
    """An exported name, or a submodule (`saferisk.models.<module>` after `import saferisk.models`), imported now."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"saferisk.models.{_EXPORTS[name]}"), name)
    try:
        return importlib.import_module(f"saferisk.models.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"saferisk.models.{name}":  # (a missing dependency of the submodule: its own error)
            raise
    raise AttributeError(f"module 'saferisk.models' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_EXPORTS})
