"""Lower bounds of a property's MinMaxSpec s(z) = min_j max_r (A[j,r] . z + b[j,r]) over a set.

Each row A[j,r] . z + b[j,r] is bounded directly by back-substitution from the spec matrix
(the margin itself, not from separate bounds on z, which would lose the correlation between
outputs); then min_j max_r LB_row <= s(z) for every z in the set, because min and max are
monotone. s > 0 on the set certifies the property there.

A final softmax (the graph's last op) is passed only when needed: rows of the form
a (p_i - p_k) with a > 0 and no offset have the sign of z_i - z_k, and certification only needs
the sign, so such rows are bounded on the logits. Other rows get interval bounds of the
probabilities from CROWN bounds l <= z <= u of the logits:
p_i >= exp(l_i) / (exp(l_i) + sum_{k != i} exp(u_k)), p_i <= exp(u_i) / (exp(u_i) + sum_{k != i} exp(l_k)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saferisk.bounds.engine import BoundEngine
from saferisk.bounds.sets import InputRegion
from saferisk.errors import ModelError
from saferisk.properties.base import MinMaxSpec


@dataclass
class SpecRows:
    """The spec flattened to S rows C (S, m), d (S,), with group index j of each row (S,)."""

    C: torch.Tensor
    d: torch.Tensor
    group: torch.Tensor
    n_groups: int
    on_logits: bool  # rows apply to the softmax input (sign-preserving) or to the graph output

    @classmethod
    def from_spec(cls, spec: MinMaxSpec, engine: BoundEngine) -> "SpecRows":
        mask = spec.mask.bool()
        J, R, m = spec.A.shape
        if m != engine.n_outputs:
            raise ModelError(f"the property spec has {m} outputs, the model has {engine.n_outputs}")
        jj, rr = mask.nonzero(as_tuple=True)
        C = spec.A[jj, rr].to(engine.device, engine.dtype)
        d = spec.b[jj, rr].to(engine.device, engine.dtype)
        on_logits = True
        if engine.softmax_output:
            positive = (C > 0).sum(-1) == 1
            negative = (C < 0).sum(-1) == 1
            balanced = torch.isclose(C.sum(-1), torch.zeros_like(d), atol=1e-12)
            on_logits = bool((positive & negative & balanced & (d == 0)).all())
        return cls(C, d, jj.to(engine.device), J, on_logits)

    def combine(self, row_lb: torch.Tensor) -> torch.Tensor:
        """min_j max_r over rows (B, S) -> (B,)."""
        B = row_lb.shape[0]
        out = torch.full((B, self.n_groups), float("-inf"), dtype=row_lb.dtype, device=row_lb.device)
        out = out.scatter_reduce(1, self.group.expand(B, -1), row_lb, reduce="amax")
        return out.amin(dim=1)

    def critical_row(self, row_lb: torch.Tensor) -> torch.Tensor:
        """Per set (B,), the row that decides s's bound: the best row of the worst group."""
        B = row_lb.shape[0]
        group_best = torch.full((B, self.n_groups), float("-inf"), dtype=row_lb.dtype, device=row_lb.device)
        group_best = group_best.scatter_reduce(1, self.group.expand(B, -1), row_lb, reduce="amax")
        worst = group_best.argmin(dim=1, keepdim=True)
        in_worst = self.group.expand(B, -1) == worst
        return torch.where(in_worst, row_lb, torch.full_like(row_lb, float("-inf"))).argmax(dim=1)


def softmax_interval(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds of softmax over the last axis from logit bounds (B, m)."""
    lo_exp_shift = lo.amax(-1, keepdim=True)
    shift = torch.maximum(lo_exp_shift, hi.amax(-1, keepdim=True))
    el, eu = torch.exp(lo - shift), torch.exp(hi - shift)
    sum_u, sum_l = eu.sum(-1, keepdim=True), el.sum(-1, keepdim=True)
    p_lo = el / (el + sum_u - eu)
    p_hi = eu / (eu + sum_l - el)
    return p_lo, p_hi.clamp(max=1.0)


def rows_lower_bound(engine: BoundEngine, inset: InputRegion, rows: SpecRows, bounds: dict,
                     alphas: dict | None = None, record: dict | None = None, betas: dict | None = None) -> torch.Tensor:
    """Lower bounds (B, S) of every spec row over the input sets, given intermediate bounds."""
    B = inset.batch
    shape = engine.output_shape
    if rows.on_logits:
        A = rows.C.reshape((1, -1) + shape).expand((B, -1) + shape)
        return engine.lower_bound(engine.output_name, A, inset, bounds, alphas, target_groups=A.shape[1],
                                  record=record, betas=betas) + rows.d
    m = engine.n_outputs
    eye = torch.eye(m, dtype=engine.dtype, device=engine.device)
    A = torch.cat([eye, -eye]).reshape((1, 2 * m) + shape).expand((B, 2 * m) + shape)
    lb = engine.lower_bound(engine.output_name, A, inset, bounds, alphas, target_groups=2)
    p_lo, p_hi = softmax_interval(lb[:, :m], -lb[:, m:])
    C = rows.C.unsqueeze(0)
    return (C.clamp(min=0) * p_lo[:, None] + C.clamp(max=0) * p_hi[:, None]).sum(-1) + rows.d


def ibp_rows_lower_bound(engine: BoundEngine, rows: SpecRows, ibp: dict) -> torch.Tensor:
    """Interval-arithmetic lower bounds of the rows from IBP output bounds (B, S)."""
    lo, hi = ibp[engine.output_name]
    B = lo.shape[0]
    lo, hi = lo.reshape(B, -1), hi.reshape(B, -1)
    if not rows.on_logits:
        lo, hi = softmax_interval(lo, hi)
    C = rows.C.unsqueeze(0)
    return (C.clamp(min=0) * lo[:, None] + C.clamp(max=0) * hi[:, None]).sum(-1) + rows.d


def spec_value(engine: BoundEngine, rows: SpecRows, x: torch.Tensor) -> torch.Tensor:
    """s at concrete flat inputs x (B, n) (on the rows' space: logits or probabilities)."""
    z = engine.forward(x)
    if not rows.on_logits:
        z = torch.softmax(z, dim=-1)
    return rows.combine(z @ rows.C.T + rows.d)
