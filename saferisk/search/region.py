"""The search region B_p(x0, r) ∩ [lower, upper] and the batched model evaluator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from saferisk import norms


@dataclass
class Region:
    """Ball of `radius` around x0 in the p-norm (distances divided by `unit`), inside the box."""

    x0: torch.Tensor  # (n,)
    radius: float
    norm: str
    lower: torch.Tensor  # (n,) domain
    upper: torch.Tensor
    unit: torch.Tensor | None = None

    def __post_init__(self):
        self.box_lower, self.box_upper = norms.ball_box(self.x0, self.radius, self.norm, self.lower, self.upper, self.unit)
        self.half_width = (self.box_upper - self.box_lower) / 2

    @property
    def n(self) -> int:
        return int(self.x0.numel())

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return norms.project(x, self.x0, self.radius, self.norm, self.lower, self.upper, self.unit)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        return norms.distance(x, self.x0, self.norm, self.unit)

    def shrink(self, radius: float) -> "Region":
        return Region(self.x0, radius, self.norm, self.lower, self.upper, self.unit)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` random points of the region: uniform in its box for L-inf; for L2/L1 a
        random direction at a radius drawn so that both the surface and the inside are seen."""
        n, device, dtype = self.n, self.x0.device, self.x0.dtype
        u = torch.rand(count, n, generator=generator, dtype=dtype).to(device)
        if self.norm == "inf":
            return self.box_lower + u * (self.box_upper - self.box_lower)
        g = torch.randn(count, n, generator=generator, dtype=dtype).to(device)
        if self.norm == "1":
            g = torch.sign(g) * (-torch.log(u.clamp_min(1e-12)))  # Laplace: uniform on the L1 sphere
        direction = g / torch.linalg.vector_norm(g, ord=norms.norm_order(self.norm), dim=1, keepdim=True).clamp_min(1e-12)
        scale = torch.rand(count, 1, generator=generator, dtype=dtype).to(device)
        scale = torch.where(scale > 0.5, torch.ones_like(scale), scale * 2) * self.radius
        step = direction * scale
        if self.unit is not None:
            step = step * self.unit
        return self.project(self.x0 + step)


# An observer sees every evaluated batch: observe(x, w). One with `takes_distance = True` is
# called observe(x, w, distance) instead, with the rows' distances ||(x - x0) / unit||_p where
# the caller computed them (x0, norm and unit of the search region, which every search of one
# witness shares; None where it did not)
Observer = Callable[..., None]


class Evaluator:
    """Evaluates w(f(x)) for batches of flat points: one forward pass per chunk of
    `chunk_size` points, counts evaluations and shows every (x, w) pair to the observers.
    `value` maps outputs z (B, m) to w (B,) (a BoundProperty's value, or an output weighting);
    `forward` computes the outputs of batches without gradients (default model.forward_flat; the
    polls may run in another runtime of the same model, see Model.poll_forward)."""

    def __init__(self, model, value: Callable[[torch.Tensor], torch.Tensor], chunk_size: int = 8192,
                 budget: int | None = None, forward: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.model = model
        self.forward = forward or (model.forward_flat if model is not None else None)
        self.value = value
        self.chunk_size = int(chunk_size)
        self.budget = budget
        self.evaluations = 0
        self.phase_start = 0
        self.phase_budget: int | None = None
        self.observers: list[Observer] = []
        # differentiable outputs of rows for a model without gradients (finite differences,
        # saferisk.search.finite_difference); None: the model's own forward_flat_grad
        self.gradient_estimate: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.gradient_rows = 0  # forward rows each estimated gradient costs (0: the model's own gradients)
        self.gradient_reuse = False  # the estimates reuse Jacobians across steps (anchored finite differences)

    @property
    def exhausted(self) -> bool:
        if self.budget is not None and self.evaluations >= self.budget:
            return True
        return self.phase_budget is not None and self.evaluations >= self.phase_start + self.phase_budget

    @property
    def total_exhausted(self) -> bool:
        return self.budget is not None and self.evaluations >= self.budget

    def new_phase(self, fraction: float | None = None, of: int | None = None) -> None:
        """Start a search phase (Lipschitz search, attack, shrinking) allowed `fraction` of the
        total budget, or of `of` evaluations (None: whatever is left)."""
        self.phase_start = self.evaluations
        base = self.budget if of is None else of
        self.phase_budget = None if fraction is None or base is None else max(1, int(fraction * base))

    def count(self, rows: int) -> None:
        """Count forward rows run outside the observed searches (finite differences)."""
        self.evaluations += int(rows)

    def _observe(self, x: torch.Tensor, w: torch.Tensor, distance: torch.Tensor | None = None) -> None:
        self.evaluations += int(x.shape[0])
        for observe in self.observers:
            if getattr(observe, "takes_distance", False):
                observe(x, w, distance)
            else:
                observe(x, w)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)[1]

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs z, values w) of the rows x without gradients (chunks of `chunk_size` rows;
        counted and observed)."""
        if x.shape[0] <= self.chunk_size:
            z = self.forward(x).to(x.dtype)
        else:
            z = torch.cat([self.forward(part).to(x.dtype) for part in torch.split(x, self.chunk_size)])
        w = self.value(z)
        self._observe(x, w)
        return z, w

    def with_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable w(f(x)) (counted and observed)."""
        return self.outputs_with_grad(x)[1]

    def outputs_with_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable (z, w) at x (counted and observed)."""
        z = self._differentiable_outputs(x)
        w = self.value(z)
        self._observe(x.detach(), w.detach())
        return z, w

    def outputs_for_gradient(self, x: torch.Tensor, distance: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(differentiable outputs z at x, values w without gradients) (counted and observed;
        `distance`: the rows' distances from x0 where the caller has them, for the observers):
        for gradients of a function of z alone (backward from z with its coefficients), the
        autograd graph holding only the model."""
        z = self._differentiable_outputs(x)
        w = self.value(z.detach())  # (detached: no autograd graph, without a no_grad context)
        self._observe(x.detach(), w, distance)
        return z, w

    def _differentiable_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs z at x with an autograd graph: the finite-difference estimate, else the model's own."""
        z = self.gradient_estimate(x) if self.gradient_estimate is not None else self.model.forward_flat_grad(x)
        return z if z.dtype == x.dtype else z.to(x.dtype)
