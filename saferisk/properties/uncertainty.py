"""Uncertainty examples: the network must not become unsure near x0.

w(z) = KL(U || softmax(z)) = -(1/m) sum_i log(m p_i) = logsumexp(z) - mean(z) - log m
(natural log; convex in z, not monotone), c = epsilon: w <= epsilon means a near-uniform output.
Sound linear lower bound for certified bounds: logsumexp(z) >= max_i z_i, so
w - c >= max_i (z_i - mean(z)) - log m - epsilon.
With `outputs: probabilities` (a network ending in Softmax) z is p itself: w = -log m - mean log p
(never a second softmax), bounded below by the tangents of -log at x0's probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, register_property


def kl_uniform_softmax(z: torch.Tensor) -> torch.Tensor:
    """KL(U || softmax(z)) per row of z (B, m), natural log."""
    m = z.shape[-1]
    return torch.logsumexp(z, dim=-1) - z.mean(dim=-1) - math.log(m)


PROBABILITY_FLOOR = 1e-12  # log of a probability output clamps it here (log 0 = -inf)


def kl_uniform_probabilities(p: torch.Tensor) -> torch.Tensor:
    """KL(U || p) = -log m - mean_i log p_i per row of probabilities p (B, m)."""
    m = p.shape[-1]
    return -torch.log(p.clamp_min(PROBABILITY_FLOOR)).mean(dim=-1) - math.log(m)


class _BoundUncertaintyProbabilities(BoundProperty):
    """On probability outputs: -log is convex, so its tangent at x0's p0_i is below it,
    -log p_i >= -log a_i - (p_i - a_i) / a_i (a_i = p0_i), a linear lower bound of w - c."""

    def __init__(self, epsilon: float, p0: torch.Tensor, decision: int):
        self.threshold = float(epsilon)
        self.a = p0.double().reshape(-1).clamp_min(PROBABILITY_FLOOR)
        self.decision = decision

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return kl_uniform_probabilities(z)

    def spec(self) -> MinMaxSpec:
        m = int(self.a.numel())
        coef = (-1.0 / (m * self.a)).tolist()
        offset = float(-math.log(m) - (torch.log(self.a) - 1.0).mean()) - self.threshold
        return MinMaxSpec.from_rows([[(coef, offset)]], m, exact=False)


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
    outputs: str = "logits"  # logits (softmax applied) | probabilities (the model's outputs are p)

    def __post_init__(self):
        if not float(self.epsilon) > 0:
            raise ConfigError(f"uncertainty epsilon must be > 0, got {self.epsilon}")
        if self.outputs not in ("logits", "probabilities"):
            raise ConfigError(f"uncertainty outputs must be 'logits' or 'probabilities', got {self.outputs!r}")

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        decision = int(z0.reshape(-1).argmax())
        if self.outputs == "probabilities":
            return _BoundUncertaintyProbabilities(float(self.epsilon), z0, decision)
        return _BoundUncertainty(float(self.epsilon), int(z0.shape[-1]), decision)
