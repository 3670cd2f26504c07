"""Gradients for models that give none (run by onnxruntime only): finite differences through
the forward-only evaluator, so that the black-box witness search gets the same PGD starts,
boundary projection and `tighten` as the gradient path.

`FiniteDifferences.outputs(x)` returns the outputs of rows x (B, n) as a differentiable tensor
whose backward estimates the vector-Jacobian product g^T J(x) by finite differences:

  n <= coordinate_limit   coordinate-wise, one-sided: J e_i ~ (f(x + h_i e_i) - f(x)) / h_i
  (COORDINATE_LIMIT)      (x - h_i e_i on the box's upper face), the whole Jacobian from n + 1
                          forward rows (exact inside a linear piece of a
                          ReLU network; O(h) off it);
  otherwise, anchored     the coordinate-wise Jacobian J_a at an anchor a, reused at every x where it
  (n + 1 rows fit the     still predicts the outputs: ||f(x) - f(a) - J_a (x - a)|| <=
  budget)                 ANCHOR_TOLERANCE ||f(x) - f(a)|| (plus float32 noise); else x becomes a new
                          anchor (n + 1 rows; where the budget left does not carry them, the closest
                          anchor serves, or before the first, random directions). Gradients of image-size inputs are high-frequency
                          (a random-weight CIFAR ResNet keeps 7% of its gradient's energy in the
                          lowest 8 x 8 DCT frequencies) but change slowly along a search path
                          (cosine 0.85 after 20 sign steps), so one Jacobian serves many steps;
  otherwise               DIRECTIONS antithetic random directions u_k (seeded): central differences
                          give J du_k, and g^T J is estimated as the minimum-norm vector that
                          matches them, times n / DIRECTIONS (unbiased for a random subspace).

Steps are STEP x the half-width of the search box per feature; points are kept inside the
domain box (the coordinate-wise steps go down on the box's upper face; the random directions
are clipped, with the actual step in the quotient). The coordinate-wise points run in one batch
with x itself (float32 results depend on the batch; beyond POINT_ELEMENTS entries, per row in
chunks, each with x); anchors whose Jacobians would pass ANCHOR_ELEMENTS entries (many outputs,
e.g. a segmentation map) give way to random directions. Identical rows (the
targeted runs of one start) share one estimate. Every forward row of the differences is counted
against the evaluator's budget (`Evaluator.count`), but not shown to its observers: they lie off
the search path, possibly outside the ball.
"""

from __future__ import annotations

import math

import torch

from saferisk.search.region import Evaluator, Region

STEP = 1e-3  # relative to the half-width of the search box per feature
COORDINATE_LIMIT = 1024  # inputs up to which the Jacobian is estimated coordinate by coordinate
DIRECTIONS = 64  # antithetic random directions per estimate beyond that, where anchors do not fit the budget
ANCHOR_COUNT = 8  # anchored Jacobians kept at most
# Anchored estimates beyond COORDINATE_LIMIT wherever the budget carries one anchor (n + 1 rows);
# where it carries no more, the closest anchor serves (random directions before the first).
# Measured (`python -m benchmarks --only black_box`: random-weight CNNs, 2 inputs x L-inf/L2):
# at the default budget of 94000 rows, 3 x 64 x 64 inputs (7 anchors fit, where 8 had to before)
# within 4.5% of the gradient path's radius in 2.8-3.6 s, against 4.0-8.0x with random directions
# in 20-28 s; 3 x 128 x 128 (one anchor fits) within 0.8%; a 3 x 24 x 24 CNN at a black_box_budget
# of 4 anchors' rows within 3.5%, against 5.5-6.3x or no witness. The CIFAR ResNet of the witness
# benchmark at a black_box_budget of 16000 (5 anchors fit): a witness on 4 of 4 (none before)
MIN_ANCHORS = 1
ANCHOR_TOLERANCE = 0.1  # relative error of the linear prediction up to which an anchor's Jacobian is reused
ANCHOR_NOISE = 1e-5  # ... plus this times the anchor's largest |output| (float32 noise of tiny moves)
# The anchored Jacobian is a secant over ANCHOR_STEP of the half-width: it must predict the
# outputs over moves of the ball's size, and the float32 difference over STEP of an image-size
# input is mostly rounding (random-weight CIFAR ResNet: cosine 0.4-0.8 with the true Jacobian
# per output at STEP, 0.995 at 3e-2)
ANCHOR_STEP = 3e-2
ANCHOR_ELEMENTS = 2 ** 26  # Jacobian entries the kept anchors may hold (n x m x ANCHOR_COUNT; 256 MB in float32)
POINT_ELEMENTS = 2 ** 24  # entries of one batch of coordinate-wise points (larger: per row, in chunks)
SEED = 0x5EED


class FiniteDifferences:
    """Finite-difference Jacobian estimates of `evaluator.forward` around points of `region`."""

    def __init__(self, evaluator: Evaluator, region: Region, seed: int = SEED,
                 coordinate_limit: int = COORDINATE_LIMIT):
        self.evaluator = evaluator
        self.coordinate_limit = int(coordinate_limit)
        self.lower, self.upper = region.lower, region.upper
        self.step = STEP * region.half_width
        self.generator = torch.Generator().manual_seed(int(seed))
        moving = int((self.step > 0).sum())
        budget = evaluator.budget
        outputs = getattr(evaluator.model, "n_outputs", None)
        # coordinate-wise Jacobians at anchors (x_a, f(x_a), J_a (n, m)) beyond the coordinate limit,
        # decided here once (the witness search plans its phases by it): where the budget carries
        # MIN_ANCHORS of them and ANCHOR_COUNT of them fit ANCHOR_ELEMENTS
        self.anchored = (moving > self.coordinate_limit
                         and (budget is None or MIN_ANCHORS * self.anchor_rows(moving) <= budget)
                         and (outputs is None or self._anchors_fit(int(outputs))))
        self.anchors: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def _anchors_fit(self, outputs: int) -> bool:
        """ANCHOR_COUNT Jacobians (n x outputs) fit ANCHOR_ELEMENTS entries."""
        return self.step.numel() * outputs * ANCHOR_COUNT <= ANCHOR_ELEMENTS

    def anchor_rows(self, moving: int) -> int:
        """Forward rows of one coordinate-wise Jacobian with `moving` free features: one per
        coordinate plus the point itself, once per batch of POINT_ELEMENTS entries (`_forward_steps`)."""
        n = self.step.numel()
        if (moving + 1) * n <= POINT_ELEMENTS:
            return moving + 1
        return moving + math.ceil(moving / max(1, POINT_ELEMENTS // n - 1))

    @property
    def rows_per_gradient(self) -> int:
        """Forward rows one gradient estimate costs here (see `rows_for`)."""
        return self.rows_for(int((self.step > 0).sum()), self.coordinate_limit)

    @staticmethod
    def rows_for(moving: int, coordinate_limit: int = COORDINATE_LIMIT) -> int:
        """Forward rows one gradient estimate costs with `moving` free features: one per
        coordinate plus x itself; beyond `coordinate_limit`, two per random direction (also the
        planning figure of the anchored estimates, whose n + 1 rows serve many steps)."""
        return moving + 1 if moving <= coordinate_limit else 2 * DIRECTIONS

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs z (B, m) of rows x, differentiable through the estimated Jacobian."""
        return _EstimatedJacobian.apply(x, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Counted forward pass of points off the search path (not observed), in chunks of the
        evaluator's chunk size."""
        x = x.detach()
        parts = torch.split(x, max(self.evaluator.chunk_size, 1))
        z = torch.cat([self.evaluator.forward(part).to(x.dtype) for part in parts])
        self.evaluator.count(x.shape[0])
        return z

    def _pairs(self, x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs at x + steps and x - steps, kept in the domain box (rows of x, k steps each:
        (B, k, m)), and the actual differences (x+) - (x-) (B, k, n)."""
        plus = torch.minimum(x.unsqueeze(1) + steps, self.upper)
        minus = torch.maximum(x.unsqueeze(1) - steps, self.lower)
        B, k, n = plus.shape
        z = self.forward(torch.cat([plus, minus], 1).reshape(-1, n)).reshape(B, 2 * k, -1)
        return z[:, :k] - z[:, k:], plus - minus

    def _forward_steps(self, x: torch.Tensor, moving: torch.Tensor, step: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One-sided differences along each moving coordinate (x + h_i e_i, or x - h_i e_i where
        that leaves the box) of rows x, x itself in the same batch: (f(x') - f(x) (B, k, m), the
        signed steps (B, k), f(x) (B, m))."""
        B, n = x.shape
        k = moving.numel()
        h = step[moving]
        up = x[:, moving] + h <= self.upper[moving]
        moved = torch.where(up, x[:, moving] + h, torch.maximum(x[:, moving] - h, self.lower[moving]))
        if B * (k + 1) * n <= POINT_ELEMENTS:
            points = x.unsqueeze(1).repeat(1, k + 1, 1)  # row 0: x itself
            points[:, 1 + torch.arange(k), moving] = moved
            z = self.forward(points.reshape(-1, n)).reshape(B, k + 1, -1)
            return z[:, 1:] - z[:, :1], moved - x[:, moving], z[:, 0]
        # per row, in chunks of coordinates, each batch with x itself in its row 0
        chunk = max(1, POINT_ELEMENTS // n - 1)
        differences, centres = [], []
        for b in range(B):
            parts = []
            for start in range(0, k, chunk):
                end = min(start + chunk, k)
                points = x[b].unsqueeze(0).repeat(end - start + 1, 1)
                points[1 + torch.arange(end - start), moving[start:end]] = moved[b, start:end]
                z = self.forward(points)
                parts.append(z[1:] - z[:1])
                if start == 0:
                    centres.append(z[0])
            differences.append(torch.cat(parts))
        return torch.stack(differences), moved - x[:, moving], torch.stack(centres)

    def _jacobians(self, rows: torch.Tensor, moving: torch.Tensor, step: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs f(rows) (U, m), coordinate-wise Jacobians (U, n, m), row i = J e_i; steps
        `step` per feature, default self.step)."""
        dz, width, z = self._forward_steps(rows, moving, self.step if step is None else step)
        jac = torch.zeros(rows.shape[0], rows.shape[1], dz.shape[2], dtype=rows.dtype, device=rows.device)
        jac[:, moving] = torch.where(width.unsqueeze(2) != 0, dz / torch.where(width != 0, width, 1.0).unsqueeze(2),
                                     torch.zeros_like(dz))
        return z, jac

    def _anchor_for(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """The Jacobian (n, m) of the newest anchor whose linear prediction of f(x) = z holds
        (ANCHOR_TOLERANCE), or None."""
        for x_a, z_a, jac in reversed(self.anchors):
            change = z - z_a
            error = torch.linalg.vector_norm(change - (x - x_a) @ jac)
            noise = ANCHOR_NOISE * float(z_a.abs().max())
            if float(error) <= ANCHOR_TOLERANCE * float(torch.linalg.vector_norm(change)) + noise:
                return jac
        return None

    def _anchored(self, rows: torch.Tensor, z_rows: torch.Tensor, moving: torch.Tensor) -> list[torch.Tensor] | None:
        """A Jacobian (n, m) for each row: a reusable anchor's, else a fresh one (the row
        becomes an anchor; the oldest beyond ANCHOR_COUNT are dropped); where the budget left
        does not carry a fresh one (`anchor_rows`), the closest anchor's, or with no anchor yet
        None (random directions then)."""
        found = [self._anchor_for(x, z) for x, z in zip(rows, z_rows)]
        budget = self.evaluator.budget
        for i in [i for i, jac in enumerate(found) if jac is None]:  # one at a time: n + 1 rows each
            if budget is not None and self.evaluator.evaluations + self.anchor_rows(moving.numel()) > budget:
                if not self.anchors:
                    return None
                found[i] = min(self.anchors, key=lambda anchor: float(torch.linalg.vector_norm(rows[i] - anchor[0])))[2]
                continue
            z_new, jac_new = self._jacobians(rows[i:i + 1], moving, self.step * (ANCHOR_STEP / STEP))
            found[i] = jac_new[0]
            self.anchors.append((rows[i].clone(), z_new[0], jac_new[0]))
            del self.anchors[:-ANCHOR_COUNT]
        return found

    def vector_jacobian(self, x: torch.Tensor, grad_z: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Estimated g^T J(x) per row (B, n) for output cotangents g = grad_z (B, m); z: the
        outputs f(x) (B, m) the anchored estimates check their prediction against."""
        rows, inverse = torch.unique(x.detach(), dim=0, return_inverse=True)
        n = rows.shape[1]
        moving = (self.step > 0).nonzero().flatten()
        if moving.numel() == 0:
            return torch.zeros_like(x)
        if moving.numel() <= self.coordinate_limit:
            _, jac = self._jacobians(rows, moving)
            return torch.einsum("bnm,bm->bn", jac[inverse], grad_z)
        if self.anchored and z is not None and not self._anchors_fit(z.shape[1]):
            self.anchored = False  # (a model without n_outputs) outputs too many to keep their Jacobians
        jacobians = None
        if self.anchored and z is not None:
            z_rows = torch.zeros(rows.shape[0], z.shape[1], dtype=z.dtype, device=z.device)
            z_rows[inverse] = z.detach().to(z_rows)
            jacobians = self._anchored(rows, z_rows, moving)
        if jacobians is not None:
            out = torch.zeros_like(x)
            for u, jac in enumerate(jacobians):
                mine = inverse == u
                out[mine] = grad_z[mine] @ jac.T
            return out
        u = torch.randn(rows.shape[0], DIRECTIONS, n, generator=self.generator, dtype=x.dtype).to(x.device)
        u = u / torch.linalg.vector_norm(u, dim=2, keepdim=True).clamp_min(1e-30) * n ** 0.5
        dz, dx = self._pairs(rows, u * self.step)
        # per original row: the minimum-norm v with dx_k . v = g . dz_k for every direction k
        s = torch.einsum("bkm,bm->bk", dz[inverse], grad_z)  # (B, k)
        D = dx[inverse]  # (B, k, n)
        gram = D @ D.transpose(1, 2)
        coef = torch.linalg.pinv(gram, hermitian=True) @ s.unsqueeze(2)  # (B, k, 1); rank-deficient near the box faces
        return (D.transpose(1, 2) @ coef).squeeze(2) * (moving.numel() / DIRECTIONS)


class _EstimatedJacobian(torch.autograd.Function):
    """Forward: the model's outputs (counted and observed by the evaluator's caller); backward:
    the finite-difference vector-Jacobian product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, estimator: FiniteDifferences) -> torch.Tensor:
        ctx.estimator = estimator
        z = estimator.evaluator.forward(x.detach()).to(x.dtype)
        ctx.save_for_backward(x, z)
        return z

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor):
        x, z = ctx.saved_tensors
        return ctx.estimator.vector_jacobian(x, grad_z.to(x.dtype), z), None


def has_gradients(model) -> bool:
    """False for a model run by onnxruntime only (graph None): it gives no gradients itself."""
    return getattr(model, "graph", True) is not None
