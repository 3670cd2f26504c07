"""The properties a VNN-LIB specification states (the spec itself is read by
`saferisk.data.vnnlib`, which builds no property objects).

`vnnlib_unsafe(spec)`: the output assertion exactly, a `LinearOutput` that fails where some
disjunct C_j y <= d_j holds (what `saferisk verify` searches and proves);
`vnnlib_property(spec)`: the property to audit: `Robustness` (with the spec's decision rule)
when the assertion is "label j changes" (bind it with label `spec.label`), else that
`LinearOutput`.

`spec` is any object with the fields `unsafe`, `label` and `decision` of a `VnnlibSpec`.
"""

from __future__ import annotations

from saferisk.properties.base import Property
from saferisk.properties.linear_output import LinearOutput
from saferisk.properties.robustness import Robustness


def vnnlib_unsafe(spec) -> LinearOutput:
    """The spec's output assertion as a LinearOutput: unsafe = OR_j {y : C_j y <= d_j}."""
    return LinearOutput(unsafe=tuple(spec.unsafe))


def vnnlib_property(spec) -> Property:
    """Robustness(decision) for a "label changes" assertion, else the exact LinearOutput."""
    if spec.label is not None:
        return Robustness(decision=spec.decision)
    return vnnlib_unsafe(spec)
