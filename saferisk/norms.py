"""Norm balls intersected with the input domain box.

Distances are ||(x - x0) / unit||_p with unit = 1 (radii in the model's input units,
`scale: input`) or unit = domain width per feature (`scale: domain`, radii in fractions of
each feature's range). Projection onto B_p(x0, r) ∩ [lo, hi] is done as ball projection then
box clipping; since x0 is in the box, clipping never moves a point farther from x0 in any
p-norm, so the result stays inside both sets.
"""

from __future__ import annotations


import torch

from saferisk.norm_names import NORMS, norm_order, parse_norm  # noqa: F401 (the names, torch-free)


def length(v: torch.Tensor, norm: str) -> torch.Tensor:
    """||v||_p along the last dimension."""
    if norm == "inf":  # amax/sum: much faster than vector_norm(ord=inf/1) on large batches
        return v.abs().amax(dim=-1)
    if norm == "1":
        return v.abs().sum(dim=-1)
    return torch.linalg.vector_norm(v, ord=2, dim=-1)


def distance(x: torch.Tensor, x0: torch.Tensor, norm: str, unit: torch.Tensor | None = None) -> torch.Tensor:
    """||(x - x0) / unit||_p for a batch x (B, n) and a centre x0 (n,) -> (B,)."""
    diff = x - x0
    if unit is not None:
        diff = diff / unit
    return length(diff, norm)


def dual_norm(a: torch.Tensor, norm: str) -> torch.Tensor:
    """||a||_q along the last dimension, q the dual of the p-norm (L-inf <-> L1, L2 <-> L2):
    max over the unit p-ball of a . d."""
    if norm == "2":
        return torch.linalg.vector_norm(a, ord=2, dim=-1)
    if norm == "1":
        return a.abs().amax(dim=-1)
    return a.abs().sum(dim=-1)


def _project_l1(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of rows of v onto the L1 ball of `radius` ((B, 1) or scalar tensor;
    Duchi et al. 2008)."""
    abs_v = v.abs()
    inside = (abs_v.sum(dim=-1, keepdim=True) <= radius).squeeze(-1)
    if bool(inside.all()):
        return v
    mu, _ = abs_v.sort(dim=-1, descending=True)
    cumsum = mu.cumsum(dim=-1)
    idx = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    cond = mu - (cumsum - radius) / idx > 0
    rho = cond.to(v.dtype).mul(idx).argmax(dim=-1, keepdim=True)
    theta = (cumsum.gather(-1, rho) - radius) / (rho + 1).to(v.dtype)
    projected = v.sign() * (abs_v - theta).clamp_min(0)
    return torch.where(inside.unsqueeze(-1), v, projected)


def project(x: torch.Tensor, x0: torch.Tensor, radius: "float | torch.Tensor", norm: str, lower: torch.Tensor,
            upper: torch.Tensor, unit: torch.Tensor | None = None) -> torch.Tensor:
    """Points of x (B, n) moved into B_p(x0, radius) ∩ [lower, upper] (`radius`: one for all
    rows, or a (B,) tensor, one per row)."""
    diff = x - x0
    if isinstance(radius, torch.Tensor):
        if radius.dtype != diff.dtype or radius.device != diff.device:
            radius = radius.to(diff)
        radius = radius.unsqueeze(1) if radius.dim() == 1 else radius.reshape(-1, 1)
    else:
        radius = torch.tensor(float(radius), dtype=diff.dtype, device=diff.device)
    if unit is not None:
        diff = diff / unit
    if norm == "inf":
        diff = torch.minimum(torch.maximum(diff, -radius), radius)
    elif norm == "2":
        length = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
        diff = diff * torch.clamp(radius / length.clamp_min(1e-30), max=1.0)
    else:
        diff = _project_l1(diff, radius)
    if unit is not None:
        diff = diff * unit
    return torch.clamp(x0 + diff, lower, upper)


def ball_box(x0: torch.Tensor, radius: float, norm: str, lower: torch.Tensor, upper: torch.Tensor,
             unit: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest box containing B_p(x0, radius) ∩ [lower, upper] (every p-ball fits in the L-inf one)."""
    step = radius if unit is None else radius * unit
    return torch.maximum(x0 - step, lower), torch.minimum(x0 + step, upper)
