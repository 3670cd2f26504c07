"""Reachability examples: a scalar output o(z) = a . z must stay in [lower, upper].

Two one-sided checks: w(z) = min(o - lower, upper - o), c = 0 (an infinite side is dropped).
The reachable range [min o, max o] over a ball or a box is computed by
`saferisk.search.reach.reachable_range`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, SpecBoundProperty, register_property


def output_weights(output: int | list[float] | tuple[float, ...], m: int) -> list[float]:
    """Weights a over the m outputs for an output index or an explicit weight vector."""
    if isinstance(output, (list, tuple)):
        if len(output) != m:
            raise ConfigError(f"output weights have {len(output)} entries, the model has {m} outputs")
        return [float(v) for v in output]
    index = int(output)
    if not -m <= index < m:
        raise ConfigError(f"output index {index} out of range for {m} outputs")
    coef = [0.0] * m
    coef[index % m] = 1.0
    return coef


@register_property
@dataclass(frozen=True)
class Reachability(Property):
    kind = "reachability"
    output: int | tuple[float, ...] = 0
    lower: float = -math.inf
    upper: float = math.inf

    def __post_init__(self):
        if isinstance(self.output, list):
            object.__setattr__(self, "output", tuple(float(v) for v in self.output))
        lo = -math.inf if self.lower is None else float(self.lower)
        hi = math.inf if self.upper is None else float(self.upper)
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        if math.isinf(lo) and math.isinf(hi):
            raise ConfigError("reachability needs a finite lower and/or upper bound")
        if lo >= hi:
            raise ConfigError(f"reachability lower ({lo}) must be below upper ({hi})")

    def weights(self, m: int) -> list[float]:
        return output_weights(self.output, m)

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        m = int(z0.shape[-1])
        a = self.weights(m)
        groups = []
        if math.isfinite(self.lower):
            groups.append([(a, -self.lower)])
        if math.isfinite(self.upper):
            groups.append([([-v for v in a], self.upper)])
        return SpecBoundProperty(MinMaxSpec.from_rows(groups, m), 0.0)

    def params(self):
        out = super().params()
        for key in ("lower", "upper"):
            if math.isinf(out[key]):
                out[key] = None
        return out
