"""General linear output properties (VNN-LIB): the unsafe set is a disjunction of conjunctions
of linear inequalities over the outputs, U = OR_j { y : C_j y <= d_j }.

w(y) = min_j max_r (C_j[r] . y - d_j[r]), c = 0: w > 0 exactly when y is outside U.
"""

from __future__ import annotations

from dataclasses import dataclass

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError
from saferisk.properties.base import BoundProperty, MinMaxSpec, Property, SpecBoundProperty, register_property


@register_property
@dataclass(frozen=True)
class LinearOutput(Property):
    kind = "linear_output"
    # unsafe: list over disjuncts j of {"C": [[...], ...], "d": [...]}
    unsafe: tuple = ()

    def __post_init__(self):
        if not self.unsafe:
            raise ConfigError("linear_output needs at least one unsafe disjunct {C, d}")
        frozen = []
        for j, term in enumerate(self.unsafe):
            C, d = term["C"], term["d"]
            if len(C) != len(d) or not C:
                raise ConfigError(f"linear_output disjunct {j}: C has {len(C)} rows, d has {len(d)}")
            frozen.append({"C": tuple(tuple(float(v) for v in row) for row in C), "d": tuple(float(v) for v in d)})
        object.__setattr__(self, "unsafe", tuple(frozen))

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        m = int(z0.shape[-1])
        groups = []
        for j, term in enumerate(self.unsafe):
            if any(len(row) != m for row in term["C"]):
                raise ConfigError(f"linear_output disjunct {j} has rows of the wrong length for {m} outputs")
            groups.append([(list(row), -dv) for row, dv in zip(term["C"], term["d"])])
        return SpecBoundProperty(MinMaxSpec.from_rows(groups, m), 0.0)

    def params(self):
        return {"kind": self.kind, "unsafe": [{"C": [list(r) for r in t["C"]], "d": list(t["d"])} for t in self.unsafe]}
