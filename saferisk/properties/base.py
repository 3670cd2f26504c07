"""What counts as a failure: a property maps network outputs z to a scalar w(z); the
property holds at x while w(f(x)) > c (`threshold`) and fails (a safety risk) when w <= c.

A property spec (`Property`) is a small dataclass with plain JSON-able fields. Binding it to
the outputs at x0 (`Property.bind`) fixes what depends on x0 (the decision j of robustness,
the label y0 of invariance) and gives a `BoundProperty`. Every bound property also gives a
`MinMaxSpec`, the form certified bounds work with:

    w(z) - c  >=  min_j max_r ( A[j, r] . z + b[j, r] )        (equality when spec.exact)

The robustness margin, reachability, invariance and VNN-LIB `linear_output` properties are
exactly of this form; the uncertainty KL has a sound linear lower bound of this form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from saferisk.lazy import lazy_module

torch = lazy_module("torch")

from saferisk.errors import ConfigError


@dataclass
class MinMaxSpec:
    """s(z) = min_j max_{r: mask[j,r]} (A[j,r] . z + b[j,r]), a lower bound on w(z) - c."""

    A: torch.Tensor  # (J, R, m)
    b: torch.Tensor  # (J, R)
    mask: torch.Tensor  # (J, R) bool
    exact: bool = True

    def groups(self, z: torch.Tensor) -> torch.Tensor:
        """The J terms max_r (A[j,r] . z + b[j,r]) for a batch of outputs z (B, m) -> (B, J)."""
        if self.A.shape[1] == 1:
            return self._flat_pieces(z)
        return self._pieces(z).max(dim=2).values

    def _pieces(self, z: torch.Tensor) -> torch.Tensor:
        """A[j, r] . z + b[j, r] for a batch of outputs z (B, m) -> (B, J, R) (masked pieces -inf)."""
        J, R, _ = self.A.shape
        return self._flat_pieces(z).reshape(-1, J, R)

    def _flat_pieces(self, z: torch.Tensor) -> torch.Tensor:
        """The pieces as (B, J * R), j major."""
        key = (z.device, z.dtype)
        if getattr(self, "_cache_key", None) != key:  # flattened, masked copy on z's device
            J, R, m = self.A.shape
            self._cache_key = key
            self._A2 = self.A.reshape(J * R, m).to(z.device, z.dtype)
            self._A2T = self._A2.T
            self._b2 = self.b.masked_fill(~self.mask, float("-inf")).reshape(J * R).to(z.device, z.dtype)
        return torch.addmm(self._b2, z, self._A2T)

    def active_terms(self, z: torch.Tensor, terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For outputs z (B, m) and a term index per row (-1: the smallest term, the one
        min_j sets): (that term's value (B,), the coefficients A[j, r*] (B, m) of its active
        piece r* = argmax_r, i.e. its gradient in z)."""
        R = self.A.shape[1]
        if R == 1:  # one piece per term (e.g. the margins to each class): the pieces are the terms
            groups = self._flat_pieces(z)
            j = torch.where(terms >= 0, terms, groups.argmin(dim=1))
            return groups.gather(1, j.unsqueeze(1)).squeeze(1), self._A2.index_select(0, j)
        rows = self._pieces(z)
        groups = rows.max(dim=2).values
        j = torch.where(terms >= 0, terms, groups.argmin(dim=1)).view(-1, 1)
        r = rows.argmax(dim=2).gather(1, j).squeeze(1)
        return groups.gather(1, j).squeeze(1), self._A2.index_select(0, j.squeeze(1) * R + r)

    def closest_terms(self, z: torch.Tensor, count: int) -> torch.Tensor:
        """Indices of the `count` smallest terms at the outputs z (m,) of one point (e.g. the
        competing classes closest to overtaking the label): the targets of targeted searches."""
        return self.groups(z.reshape(1, -1))[0].argsort()[:count]

    def evaluate(self, z: torch.Tensor) -> torch.Tensor:
        """s(z) = min_j groups(z)[:, j] for a batch of outputs z (B, m) -> (B,)."""
        groups = self.groups(z)
        return groups.amin(dim=1) if groups.shape[1] > 1 else groups.squeeze(1)

    @staticmethod
    def from_rows(rows: list[list[tuple[list[float], float]]], m: int, exact: bool = True) -> "MinMaxSpec":
        """Build from a list (over j) of lists (over r) of (coefficients, offset)."""
        J = len(rows)
        R = max(len(r) for r in rows)
        A = torch.zeros(J, R, m, dtype=torch.float64)
        b = torch.zeros(J, R, dtype=torch.float64)
        mask = torch.zeros(J, R, dtype=torch.bool)
        for j, group in enumerate(rows):
            for r, (coef, off) in enumerate(group):
                A[j, r] = torch.as_tensor(coef, dtype=torch.float64)
                b[j, r] = float(off)
                mask[j, r] = True
        return MinMaxSpec(A, b, mask, exact)


class BoundProperty:
    """A property fixed at one x0: `value(z)` gives w for a batch of outputs (B, m)."""

    threshold: float = 0.0
    decision: int | None = None
    # Whether `minimise_value` of the search should drive w itself down (True for all
    # built-in properties); the Lipschitz search uses |w(x) - w(x0)| either way.

    def value(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> MinMaxSpec | None:
        """MinMaxSpec for certified bounds, or None when the property has none."""
        return None

    def violated(self, z: torch.Tensor) -> torch.Tensor:
        """Boolean (B,): the property fails at these outputs (w <= c, or w is NaN)."""
        w = self.value(z)
        return ~(w > self.threshold)


class SpecBoundProperty(BoundProperty):
    """A bound property whose w - c IS its MinMaxSpec (exact): value = spec(z) + c."""

    def __init__(self, spec: MinMaxSpec, threshold: float = 0.0, decision: int | None = None):
        self._spec = spec
        self.threshold = float(threshold)
        self.decision = decision

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self._spec.evaluate(z) + self.threshold

    def spec(self) -> MinMaxSpec:
        return self._spec


class MarginProperty(BoundProperty):
    """`prop` made stricter by `margin` >= 0: fails where w <= c - margin (same w; threshold
    c - margin; the spec's offsets + margin, so w - (c - margin) >= s(z) + margin still holds).
    Searches run on it so that every violation they keep survives float rounding elsewhere."""

    def __init__(self, prop: BoundProperty, margin: float):
        self.base, self.margin = prop, float(margin)
        self.threshold = float(prop.threshold) - self.margin
        self.decision = prop.decision

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.value(z)

    def spec(self) -> MinMaxSpec | None:
        spec = self.base.spec()
        if spec is None or self.margin == 0:
            return spec
        return MinMaxSpec(spec.A, spec.b + self.margin, spec.mask, spec.exact)


@dataclass(frozen=True)
class Property:
    """Base of property specs: `kind` names it; the fields are its parameters."""

    kind: ClassVar[str] = ""
    # True for properties whose radius is measured around reference inputs (invariance).
    needs_references: ClassVar[bool] = False

    def bind(self, z0: torch.Tensor, label: int | None = None) -> BoundProperty:
        """Fix the property at x0, given its outputs z0 (m,) and optional true label."""
        raise NotImplementedError

    def centers(self, x0, label: int | None, references, input_id: str = "0") -> list[tuple[str | None, Any]]:
        """Where the radius of input x0 is measured: (reference id, centre) pairs; the radius is
        the minimum over them. Default: x0 itself, [(None, x0)]. A property measured around
        reference inputs (invariance) returns [(id, x1), ...] from `references` ((id, x1) pairs)."""
        return [(None, x0)]

    def reference_count(self) -> int:
        """How many nearest reference inputs (of another label) `centers` needs (0: none)."""
        return 0

    def bind_center(self, z: torch.Tensor, label: int | None, reference_id: str | None) -> BoundProperty:
        """The bound property at a centre of `centers` whose outputs are z (m,): bind(z, label)."""
        return self.bind(z, label)

    def params(self) -> dict[str, Any]:
        """Plain, JSON-able parameters (with `kind`)."""
        out = {"kind": self.kind}
        out.update(dataclasses.asdict(self))
        return out

    @property
    def name(self) -> str:
        return self.kind


PROPERTY_KINDS: dict[str, type[Property]] = {}


def register_property(cls: type[Property]) -> type[Property]:
    """Class decorator: make a Property subclass available by its `kind` (config and CLI)."""
    if not cls.kind:
        raise ValueError("a property class needs a non-empty `kind`")
    PROPERTY_KINDS[cls.kind] = cls
    return cls


def make_property(spec: dict[str, Any]) -> Property:
    """Build a property from a plain dict {'kind': ..., **params}; clear error on bad keys."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in PROPERTY_KINDS:
        known = ", ".join(sorted(PROPERTY_KINDS))
        raise ConfigError(f"unknown property kind {kind!r}; choose one of: {known}")
    cls = PROPERTY_KINDS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise ConfigError(f"property '{kind}' has no parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names)) or 'none'}")
    try:
        return cls(**spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"property '{kind}': {exc}") from None
