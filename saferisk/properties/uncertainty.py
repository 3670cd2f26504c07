"""Uncertainty examples: the network must not become unsure near x0.

w(z) = KL(U || softmax(z)) = -(1/m) sum_i log(m p_i) = logsumexp(z) - mean(z) - log m
(natural log; convex in z, not monotone), c = epsilon: w <= epsilon means a near-uniform output.
Sound linear lower bound for certified bounds: logsumexp(z) >= max_i z_i, so
w - c >= max_i (z_i - mean(z)) - log m - epsilon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, register_property


def kl_uniform_softmax(z: torch.Tensor) -> torch.Tensor:
    """KL(U || softmax(z)) per row of z (B, m), natural log."""
    m = z.shape[-1]
    return torch.logsumexp(z, dim=-1) - z.mean(dim=-1) - math.log(m)


class _BoundUncertainty(BoundProperty):
    def __init__(self, epsilon: float, m: int, decision: int):
        self.threshold = float(epsilon)
        self.m = m
        self.decision = decision

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return kl_uniform_softmax(z)

    def spec(self) -> MinMaxSpec:
        m = self.m
        rows = []
        for i in range(m):
            coef = [-1.0 / m] * m
            coef[i] += 1.0
            rows.append((coef, -math.log(m) - self.threshold))
        return MinMaxSpec.from_rows([rows], m, exact=False)


@register_property
@dataclass(frozen=True)
class Uncertainty(Property):
    kind = "uncertainty"
    epsilon: float = 0.01

    def __post_init__(self):
        if not float(self.epsilon) > 0:
            raise ConfigError(f"uncertainty epsilon must be > 0, got {self.epsilon}")

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        return _BoundUncertainty(float(self.epsilon), int(z0.shape[-1]), int(z0.reshape(-1).argmax()))
