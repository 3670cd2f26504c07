"""Branch and bound within a time budget: the set is certified when every sub-problem is.

Input splitting (low-dimensional inputs such as ACAS Xu's 5): sub-boxes are bounded in batches
(intermediate bounds: forward linear bounds first, where the graph is a chain, then CROWN for
the neurons still unstable; spec rows by CROWN; a max over rows by the best convex combination
of the rows, see max_affine_lower_bound). A box not certified is cut in two at the midpoint of
the feature with the largest |coefficient| x width in the deciding linear bound, or of the
widest feature when that linear bound's variation over the box cannot explain the gap to 0
(the gap is relaxation error, which any split shrinks); the union of the halves is the box, so
certifying both certifies the whole (a ball constraint, when present, is kept for every half).

ReLU splitting: an unstable ReLU input x_i in [l, u] is split into x_i >= 0 and x_i <= 0; each
half has a tighter, valid relaxation (the ReLU is linear on it), so a lower bound over the
whole input set with that relaxation is a lower bound over the half; intermediate bounds that
cross (l > u) prove the half empty. The split constraints also enter the final pass through
Lagrange multipliers beta >= 0 (beta-CROWN, see engine.backward), optimised with the ReLU slopes. The neuron chosen is the one whose upper-line intercept
contributes most to the worst row's bound (BaBSR-like).

Both also evaluate s at the sub-domain centres: a centre inside the set with s <= 0 is a
counterexample (for exact specs) and ends the search as "falsified".
"""

from __future__ import annotations

import time

import torch

from saferisk.bounds.engine import BoundEngine
from saferisk.bounds.methods import Adam
from saferisk.bounds.sets import InputRegion
from saferisk.bounds.spec import SpecRows, ibp_rows_lower_bound, rows_lower_bound, spec_value

MAX_DOMAINS = 200_000


def _inside_ball(inset: InputRegion, x: torch.Tensor) -> torch.Tensor:
    if not inset.has_ball():
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    diff = x - inset.x0
    if inset.unit is not None:
        diff = diff / inset.unit
    order = 2.0 if inset.norm == "2" else 1.0
    return torch.linalg.vector_norm(diff, ord=order, dim=-1) <= inset.radius


def max_affine_lower_bound(inset: InputRegion, A_in: torch.Tensor, offset: torch.Tensor, rows: SpecRows,
                           s_lb: torch.Tensor, steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Better lower bound of s = min_j max_{r in j} f_r over box sets, from linear lower bounds
    f_r(x) >= a_r . x + c_r (A_in (B, S, n), offset (B, S)), and the deciding coefficient (B, n).

    For any weights lambda >= 0 summing to 1 over a group, max_r f_r >= sum_r lambda_r f_r, so
    min over the box of sum_r lambda_r (a_r . x + c_r) is a sound lower bound of the group's max
    (max_r of the rows' separate minima is the one-hot case; by LP duality the best lambda
    reaches min_x max_r (a_r . x + c_r)). lambda by exponentiated subgradient ascent from the
    one-hot of the best row; the best value seen per set is kept. Returns the max of this and
    `s_lb` (both sound), with the coefficient sum_r lambda_r a_r of the worst group.
    """
    B, S, n = A_in.shape
    lo, hi = inset.lower, inset.upper
    group_lbs, group_coefs = [], []
    for j in range(rows.n_groups):
        idx = (rows.group == j).nonzero().flatten()
        A, c = A_in[:, idx], offset[:, idx]  # (B, R, n), (B, R)
        sep = (A.clamp(min=0) @ lo.unsqueeze(-1) + A.clamp(max=0) @ hi.unsqueeze(-1)).squeeze(-1) + c  # (B, R)
        best_value, arg = sep.max(dim=1)
        best_coef = A.gather(1, arg.view(B, 1, 1).expand(B, 1, n)).squeeze(1)
        if idx.numel() > 1:
            theta = torch.zeros_like(sep)
            theta.scatter_(1, arg[:, None], 2.0)
            scale = (sep.amax(1, keepdim=True) - sep.amin(1, keepdim=True)).clamp_min(1e-9)
            for _ in range(steps):
                lam = torch.softmax(theta, dim=1)
                w = (lam.unsqueeze(-1) * A).sum(1)  # (B, n)
                x_star = torch.where(w > 0, lo, hi)
                value = (w * x_star).sum(-1) + (lam * c).sum(1)
                better = value > best_value
                best_value = torch.where(better, value, best_value)
                best_coef = torch.where(better[:, None], w, best_coef)
                grad = (A @ x_star.unsqueeze(-1)).squeeze(-1) + c  # d value / d lambda_r
                theta = theta + 2.0 * grad / scale
        group_lbs.append(best_value)
        group_coefs.append(best_coef)
    lbs = torch.stack(group_lbs, dim=1)
    worst = lbs.argmin(dim=1)
    coef = torch.stack(group_coefs, dim=1).gather(1, worst.view(B, 1, 1).expand(B, 1, n)).squeeze(1)
    return torch.maximum(lbs.amin(dim=1), s_lb), coef


def input_split(engine: BoundEngine, rows: SpecRows, inset: InputRegion, deadline: float,
                batch: int = 256, exact_spec: bool = True) -> str:
    """'verified' | 'falsified' | 'unknown' for one input set (B = 1) by input splitting."""
    lower, upper = inset.lower, inset.upper
    balls = inset.select(torch.zeros(1, dtype=torch.long, device=lower.device))
    scale = (upper - lower).clamp_min(1e-12)
    forward = engine.supports_forward()  # cheap forward bounds first: fewer unstable neurons for CROWN
    with torch.no_grad():
        while lower.shape[0]:
            if time.perf_counter() > deadline or lower.shape[0] > MAX_DOMAINS:
                return "unknown"
            lo_b, hi_b = lower[:batch], upper[:batch]
            lower, upper = lower[batch:], upper[batch:]
            sub = balls.select(torch.zeros(lo_b.shape[0], dtype=torch.long, device=lo_b.device)).with_box(lo_b, hi_b)
            ibp = engine.ibp(sub)
            start = {**ibp, **engine.forward_bounds(sub, ibp)} if forward else ibp
            bounds = engine.intermediate_bounds(sub, "crown", None, None, start)
            B = sub.batch
            shape = engine.output_shape
            if rows.on_logits:
                A = rows.C.reshape((1, -1) + shape).expand((B, -1) + shape)
                A_in, bias = engine.backward(engine.output_name, A, bounds)
                A_in = A_in.reshape(B, A.shape[1], -1)
                row_lb = torch.maximum(sub.min_linear(A_in) + bias + rows.d, ibp_rows_lower_bound(engine, rows, ibp))
            else:
                row_lb = rows_lower_bound(engine, sub, rows, bounds)
                A_in = None
            s_lb = rows.combine(row_lb)
            coef = None
            if A_in is not None:
                s_lb, coef = max_affine_lower_bound(sub, A_in, bias + rows.d, rows, s_lb)
            open_ = ~(s_lb > 0)
            if exact_spec:
                centre = (lo_b + hi_b) / 2
                bad = (spec_value(engine, rows, centre) <= 0) & _inside_ball(sub, centre)
                if bool(bad.any()):
                    return "falsified"
            if not bool(open_.any()):
                continue
            lo_o, hi_o = lo_b[open_], hi_b[open_]
            width = (hi_o - lo_o) / scale
            score = width
            if coef is not None:  # the deciding linear bound's |coefficient| x width (smart branching)
                influence = coef[open_].abs() * (hi_o - lo_o)
                # where the variation of the linear bound over the set cannot explain the gap to 0,
                # the gap is relaxation error: split the widest dimension instead
                varies = influence.sum(dim=1) >= -s_lb[open_]
                score = torch.where(varies[:, None], influence + 1e-9 * width, width)
            dim = score.argmax(dim=1)
            mid = ((lo_o + hi_o) / 2).gather(1, dim[:, None]).squeeze(1)
            left_hi, right_lo = hi_o.clone(), lo_o.clone()
            rows_idx = torch.arange(lo_o.shape[0], device=lo_o.device)
            left_hi[rows_idx, dim] = mid
            right_lo[rows_idx, dim] = mid
            lower = torch.cat([torch.cat([lo_o, right_lo]), lower])
            upper = torch.cat([torch.cat([left_hi, hi_o]), upper])
    return "verified"


def _optimise_slopes_and_betas(engine, rows, sub, bounds, splits, row_lb, iterations, deadline, lr=0.1):
    """Better final-pass row bounds of split sub-domains: ReLU slopes (alpha) and split
    multipliers beta >= 0 by projected gradient ascent; the best bound per row is kept."""
    B, S = row_lb.shape
    alphas: dict = {}
    betas = {name: (torch.zeros((B, S) + engine.shapes[name], dtype=engine.dtype, device=engine.device,
                                requires_grad=True), splits[name]) for name in splits if bool((splits[name] != 0).any())}
    best = row_lb
    optimiser = None
    for _ in range(iterations):
        if time.perf_counter() > deadline:
            break
        with torch.enable_grad():
            lb = rows_lower_bound(engine, sub, rows, bounds, alphas, None, betas)
            best = torch.maximum(best, lb.detach())
            if optimiser is None:
                optimiser = Adam(list(alphas.values()) + [b for b, _ in betas.values()], lr=lr)
            (-lb.clamp(max=1.0).sum()).backward()
            optimiser.step()
        with torch.no_grad():
            for value in alphas.values():
                value.clamp_(0.0, 1.0)
            for value, _ in betas.values():
                value.clamp_(min=0.0)
    with torch.no_grad():
        return torch.maximum(best, rows_lower_bound(engine, sub, rows, bounds, alphas, None, betas))


def relu_split(engine: BoundEngine, rows: SpecRows, inset: InputRegion, deadline: float,
               batch: int = 256, exact_spec: bool = True, iterations: int = 3) -> str:
    """'verified' | 'falsified' | 'unknown' for one input set (B = 1) by ReLU splitting."""
    pre = [n.inputs[0] for n in engine.relu_nodes]
    if not pre:
        return "unknown"
    splits0 = {name: torch.zeros((1,) + engine.shapes[name], dtype=torch.int8, device=engine.device) for name in pre}
    domains = [splits0]  # each: dict name -> (1, *shape)
    with torch.no_grad():
        while domains:
            if time.perf_counter() > deadline or len(domains) > MAX_DOMAINS:
                return "unknown"
            chunk, domains = domains[:batch], domains[batch:]
            B = len(chunk)
            splits = {name: torch.cat([d[name] for d in chunk]) for name in pre}
            sub = inset.select(torch.zeros(B, dtype=torch.long, device=inset.lower.device))
            ibp = engine.ibp(sub)
            bounds = engine.intermediate_bounds(sub, "crown", None, splits, ibp)
            record: dict = {}
            row_lb = rows_lower_bound(engine, sub, rows, bounds, None, record)
            s_lb = rows.combine(row_lb)
            empty = torch.zeros(B, dtype=torch.bool, device=s_lb.device)
            for name in pre:
                lo, hi = bounds[name]
                empty |= (lo > hi).reshape(B, -1).any(dim=1)
            open_ = ~(s_lb > 0) & ~empty
            if bool(open_.any()) and rows.on_logits and iterations > 0:
                row_lb = _optimise_slopes_and_betas(engine, rows, sub, bounds, splits, row_lb, iterations, deadline)
                open_ = ~(rows.combine(row_lb) > 0) & ~empty
            if not bool(open_.any()):
                continue
            worst = rows.critical_row(row_lb)
            best_score = torch.full((B,), -1.0, dtype=row_lb.dtype, device=row_lb.device)
            best_choice: list = [None] * B
            for name in pre:
                lo, hi = bounds[name]
                coef, bu = record[name]
                unstable = ((lo < 0) & (hi > 0) & (splits[name] == 0)).reshape(B, -1)
                c = coef.gather(1, worst.view(B, 1, *([1] * (coef.dim() - 2))).expand(B, 1, *coef.shape[2:])).squeeze(1)
                intercept = bu.expand_as(coef)[:, 0] if bu.shape[1] == 1 else bu.gather(
                    1, worst.view(B, 1, *([1] * (coef.dim() - 2))).expand(B, 1, *coef.shape[2:])).squeeze(1)
                score = (-(c.clamp(max=0)) * intercept).reshape(B, -1)
                score = score + 1e-6 * ((hi - lo).reshape(B, -1))
                score = torch.where(unstable, score, torch.full_like(score, -1.0))
                value, index = score.max(dim=1)
                better = value > best_score
                for b in torch.nonzero(better & open_).flatten().tolist():
                    best_score[b] = value[b]
                    best_choice[b] = (name, int(index[b]))
            for b in torch.nonzero(open_).flatten().tolist():
                if best_choice[b] is None:  # nothing left to split: the relaxation is exact here
                    return "unknown"
                name, flat = best_choice[b]
                for sign in (1, -1):
                    child = {k: chunk[b][k].clone() for k in pre}
                    child[name].view(-1)[flat] = sign
                    domains.append(child)
    return "verified"


def branch_and_bound(engine: BoundEngine, rows: SpecRows, inset: InputRegion, deadline: float,
                     input_split_max_dim: int = 8, batch: int = 256, exact_spec: bool = True,
                     iterations: int = 3) -> str:
    """Input splitting for small inputs, ReLU splitting otherwise (`iterations` of slope and
    beta optimisation per batch of sub-domains)."""
    if engine.n_inputs <= input_split_max_dim:
        return input_split(engine, rows, inset, deadline, max(batch, 256), exact_spec)
    return relu_split(engine, rows, inset, deadline, batch, exact_spec, iterations)
