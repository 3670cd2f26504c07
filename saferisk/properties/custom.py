"""User-defined properties: a function of the outputs plus a threshold.

    property: {kind: custom, function: "mypkg.props:speed_margin", threshold: 0.0}

`function` is an importable `module:function` mapping outputs z (B, m) to w (B,); the property
fails where w <= threshold. Custom properties get estimates and witnesses; certified bounds
need a linear form (subclass Property and return a MinMaxSpec, see base.py) and otherwise
report why `radius_lower` is null.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, Property, register_property


class _BoundCustom(BoundProperty):
    def __init__(self, fn, threshold: float):
        self.fn = fn
        self.threshold = float(threshold)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z).reshape(-1)


@register_property
@dataclass(frozen=True)
class Custom(Property):
    kind = "custom"
    function: str = ""
    threshold: float = 0.0

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        module_name, _, attr = self.function.partition(":")
        if not module_name or not attr:
            raise ConfigError(f"custom property function must be 'module:function', got {self.function!r}")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import custom property function {self.function!r}: {exc}") from None
        return _BoundCustom(fn, self.threshold)
