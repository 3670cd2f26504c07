"""Adversarial examples: the decision at x0 must not change.

w(z) = z_j - max_{i != j} z_i (logit margin of the decision j at x0; `argmin` networks such as
ACAS Xu use -z), c = 0. A tie at the top counts as a changed decision (w = 0 <= c).
With `target_classes` T only a decision in T counts: w = min_{t in T} (max_{i != t} z_i - z_t).
A one-output binary classifier with `binary_threshold` t decides class 1 where z >= t:
w = z - t at class 1, t - z at class 0 (a tie counts as changed).
"""

from __future__ import annotations

from dataclasses import dataclass

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, SpecBoundProperty, register_property


def decide(z: torch.Tensor, rule: str) -> torch.Tensor:
    """Decision per row of outputs z (B, m) under `argmax` or `argmin`."""
    return z.argmin(dim=-1) if rule == "argmin" else z.argmax(dim=-1)


@register_property
@dataclass(frozen=True)
class Robustness(Property):
    kind = "robustness"
    decision: str = "argmax"
    target_classes: tuple[int, ...] | None = None
    # one-output (binary) classifiers: class 1 where the output >= binary_threshold (0.5 for a
    # sigmoid probability, 0 for a logit); w = z - t for class 1, t - z for class 0
    binary_threshold: float | None = None

    def __post_init__(self):
        if self.decision not in ("argmax", "argmin"):
            raise ConfigError(f"robustness decision must be 'argmax' or 'argmin', got {self.decision!r}")
        if self.target_classes is not None:
            object.__setattr__(self, "target_classes", tuple(int(t) for t in self.target_classes))

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        m = int(z0.shape[-1])
        if m == 1 and self.binary_threshold is not None:
            t = float(self.binary_threshold)
            j = int(float(z0.reshape(-1)[0]) >= t)
            coef, offset = ([1.0], -t) if j == 1 else ([-1.0], t)
            return SpecBoundProperty(MinMaxSpec.from_rows([[(coef, offset)]], 1), 0.0, decision=j)
        if m < 2:
            raise ConfigError(f"robustness needs a classifier with at least 2 outputs, the model has {m} "
                              "(a one-output binary classifier: set params.binary_threshold, 0.5 for a sigmoid "
                              "output; a regression model: use reachability)")
        sign = -1.0 if self.decision == "argmin" else 1.0
        j = int(decide(z0.reshape(1, -1), self.decision)[0])
        groups = []
        if self.target_classes is None:
            for i in range(m):
                if i != j:
                    coef = [0.0] * m
                    coef[j], coef[i] = sign, -sign
                    groups.append([(coef, 0.0)])
        else:
            bad = [t for t in self.target_classes if not 0 <= t < m]
            if bad:
                raise ConfigError(f"target_classes {bad} out of range for {m} outputs")
            for t in self.target_classes:
                if t == j:
                    continue
                rows = []
                for i in range(m):
                    if i != t:
                        coef = [0.0] * m
                        coef[i], coef[t] = sign, -sign
                        rows.append((coef, 0.0))
                groups.append(rows)
            if not groups:  # the only target is the decision itself: never "becomes" it
                raise ConfigError("target_classes contains only the decision at x0; nothing to check")
        return SpecBoundProperty(MinMaxSpec.from_rows(groups, m), 0.0, decision=j)
