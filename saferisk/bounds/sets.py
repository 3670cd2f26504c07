"""Input sets of certified bounds: a norm ball intersected with a box, batched.

S_b = { x : ||(x - x0_b) / unit||_p <= d_b } ∩ [lo_b, hi_b]   for b = 1..B.

`box` is the smallest box holding S_b (the L-inf ball's box ∩ the domain box; every p-ball fits
in the L-inf ball of the same radius). The minimum of a linear function a.x over S_b is bounded
below by BOTH
  box bound:  sum_i min(a_i lo_i, a_i hi_i)                       (exact for L-inf ∩ box)
  ball bound: a.x0 - d ||a * unit||_q,  1/p + 1/q = 1            (Hölder: exact over the ball)
and both are sound for the intersection, so the larger is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saferisk.norms import dual_norm


@dataclass
class InputRegion:
    """B input regions bounds are computed over (flat features): box (B, n) and, for L2/L1, the ball
    (x0 (B, n), radius (B,)). Not to be confused with saferisk.data.inputs.InputSet (data rows)."""

    lower: torch.Tensor
    upper: torch.Tensor
    norm: str = "inf"
    x0: torch.Tensor | None = None
    radius: torch.Tensor | None = None
    unit: torch.Tensor | None = None

    @classmethod
    def ball(cls, x0: torch.Tensor, radius: torch.Tensor, norm: str, dom_lower: torch.Tensor,
             dom_upper: torch.Tensor, unit: torch.Tensor | None = None) -> "InputRegion":
        """Balls of radii `radius` (B,) around x0 (n,) or (B, n), intersected with the domain box."""
        radius = radius.reshape(-1)
        x0 = x0.reshape(1, -1).expand(radius.numel(), -1) if x0.dim() == 1 else x0
        step = radius[:, None] * (1.0 if unit is None else unit[None, :])
        lower = torch.maximum(x0 - step, dom_lower)
        upper = torch.minimum(x0 + step, dom_upper)
        return cls(lower, upper, norm, x0 if norm != "inf" else None, radius if norm != "inf" else None, unit)

    @classmethod
    def box(cls, lower: torch.Tensor, upper: torch.Tensor) -> "InputRegion":
        return cls(lower.reshape(lower.shape[0], -1) if lower.dim() > 1 else lower.reshape(1, -1),
                   upper.reshape(upper.shape[0], -1) if upper.dim() > 1 else upper.reshape(1, -1))

    @property
    def batch(self) -> int:
        return int(self.lower.shape[0])

    def has_ball(self) -> bool:
        return self.norm != "inf" and self.x0 is not None

    def select(self, index: torch.Tensor) -> "InputRegion":
        """The sets at `index` (a long tensor), e.g. to replicate for sub-domains."""
        pick = (lambda t: None if t is None else t[index])
        return InputRegion(self.lower[index], self.upper[index], self.norm, pick(self.x0), pick(self.radius), self.unit)

    def with_box(self, lower: torch.Tensor, upper: torch.Tensor) -> "InputRegion":
        return InputRegion(lower, upper, self.norm, self.x0, self.radius, self.unit)

    def min_linear(self, A: torch.Tensor) -> torch.Tensor:
        """Lower bound of min_{x in S_b} A[b, k] . x for A (B, K, n) -> (B, K)."""
        centre = ((self.lower + self.upper) / 2).unsqueeze(-1)
        half = ((self.upper - self.lower) / 2).unsqueeze(-1)
        bound = (A @ centre - A.abs() @ half).squeeze(-1)
        if self.has_ball():
            scaled = A if self.unit is None else A * self.unit
            ball = (A @ self.x0.unsqueeze(-1)).squeeze(-1) - self.radius[:, None] * dual_norm(scaled, self.norm)
            bound = torch.maximum(bound, ball)
        return bound
