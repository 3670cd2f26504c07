"""Invariant examples (excessive invariance): a person's decision changes, the network's does not.

For a labelled x0 (label y0) and each of its k nearest inputs x1 with a different label, the
network must NOT output y0 anywhere in the ball around x1:
w(z) = max_{i != y0} z_i - z_{y0} (targeted margin against y0), c = 0; a tie counts as y0.
The radius per x0 is the minimum over the k references of the targeted radius around x1
(computed by `saferisk.radius`, which also reports the reference id and ||x1 - x0||).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, SpecBoundProperty, register_property


def targeted_away(y0: int, m: int) -> BoundProperty:
    """Bound property 'the output is not y0': w = max_{i != y0} z_i - z_{y0} > 0."""
    rows = []
    for i in range(m):
        if i != y0:
            coef = [0.0] * m
            coef[i], coef[y0] = 1.0, -1.0
            rows.append((coef, 0.0))
    return SpecBoundProperty(MinMaxSpec.from_rows([rows], m), 0.0, decision=None)


@register_property
@dataclass(frozen=True)
class Invariance(Property):
    kind = "invariance"
    needs_references = True
    k: int = 3

    def __post_init__(self):
        if int(self.k) < 1:
            raise ConfigError(f"invariance k must be >= 1, got {self.k}")

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        """Bound at a REFERENCE x1: z0 are its outputs, `label` is y0 (x0's label)."""
        if label is None:
            raise ConfigError("invariance needs labelled inputs")
        m = int(z0.shape[-1])
        if not 0 <= int(label) < m:
            raise ConfigError(f"label {label} out of range for {m} outputs")
        return targeted_away(int(label), m)
