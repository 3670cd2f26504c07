"""Invariant examples (excessive invariance): a person's decision changes, the network's does not.

For a labelled x0 (label y0) and each of its k nearest inputs x1 with a different label, the
network must NOT output y0 anywhere in the ball around x1:
w(z) = max_{i != y0} z_i - z_{y0} (targeted margin against y0), c = 0; a tie counts as y0.
The radius per x0 is the minimum over the k references of the targeted radius around x1
(`Invariance.centers` names the references, `saferisk.radius` measures around each and also
reports the reference id and ||x1 - x0||).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError, DataError
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

    def reference_count(self) -> int:
        return int(self.k)

    def centers(self, x0, label: int | None, references, input_id: str = "0") -> list[tuple[str | None, Any]]:
        """The reference inputs (id, x1): the radius is measured around each of them."""
        if label is None:
            raise DataError("invariance needs labelled inputs (give labels)")
        if not references:
            raise DataError(f"invariance: input {input_id} has no reference input with a different label")
        return [(str(ref_id), x1) for ref_id, x1 in references]

    def bind_center(self, z: torch.Tensor, label: int | None, reference_id: str | None) -> BoundProperty:
        """'The output is not y0' (x0's label) at a reference whose outputs are z."""
        return targeted_away(int(label), int(z.numel()))
