"""Branch and bound within a work budget: the set is certified when every sub-problem is.

Input splitting (low-dimensional inputs such as ACAS Xu's 5): sub-boxes are bounded in batches
(intermediate bounds: forward linear bounds first, where the graph is a chain, intersected with
the parent box's intermediate bounds (sound: a sub-box is a subset), then CROWN for the neurons
still unstable; spec rows by CROWN; a max over rows by the best convex combination
of the rows, see max_affine_lower_bound). A box not certified is cut in two at the midpoint of
the feature with the largest |coefficient| x width in the deciding linear bound, or of the
widest feature when that linear bound's variation over the box cannot explain the gap to 0
(the gap is relaxation error, which any split shrinks); the union of the halves is the box, so
certifying both certifies the whole (a ball constraint, when present, is kept for every half).

ReLU splitting: an unstable ReLU input x_i in [l, u] is split into x_i >= 0 and x_i <= 0; each
half has a tighter, valid relaxation (the ReLU is linear on it), so a lower bound over the
whole input set with that relaxation is a lower bound over the half; intermediate bounds that
cross (l > u) prove the half empty. For rows on the logits (the usual case) the root's
intermediate bounds are tightened once by alpha-CROWN with slopes optimised per bounded neuron,
and a sub-domain inherits its parent's intermediate bounds (sound: it is a subset) with the
split neuron clamped at 0, so a step only re-bounds the spec rows; the split constraints enter
that pass through Lagrange multipliers beta >= 0 (beta-CROWN, see engine.backward), optimised
with the ReLU slopes, both started from the parent's values. s = min over groups, so each group
not yet proved at the root gets its own search (its rows only: fewer splits, cheaper steps).
Rows on probabilities recompute every sub-domain's intermediate bounds by CROWN instead. The
neuron chosen is the one whose upper-line intercept contributes most to the worst row's bound
(BaBSR-like).

Both also evaluate s at the sub-domain centres: a centre inside the set with s <= 0 is a
counterexample (for exact specs) and ends the search as "falsified".
"""

from __future__ import annotations

import torch

from saferisk.bounds.engine import BoundEngine
from saferisk.bounds.methods import Adam, maximise_bound
from saferisk.bounds.relax import default_alpha
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


def input_split(engine: BoundEngine, rows: SpecRows, inset: InputRegion, budget,
                batch: int = 256, exact_spec: bool = True) -> str:
    """'verified' | 'falsified' | 'unknown' for one input set (B = 1) by input splitting."""
    balls = inset.select(torch.zeros(1, dtype=torch.long, device=inset.lower.device))
    scale = (inset.upper - inset.lower).clamp_min(1e-12)
    forward = engine.supports_forward()  # cheap forward bounds first: fewer unstable neurons for CROWN
    # the queued boxes (key "") and, per pre-activation node, their parent's intermediate bounds
    # (sound for a sub-box, a subset; unbounded for the root)
    names = [name for name in engine.pre_nodes if name != engine.input_name]
    unbounded = lambda name: torch.full((1,) + engine.shapes[name], float("inf"), dtype=engine.dtype,  # noqa: E731
                                        device=engine.device)
    queue = {"": (inset.lower, inset.upper), **{name: (-unbounded(name), unbounded(name)) for name in names}}
    with torch.no_grad():
        while (N := queue[""][0].shape[0]):
            if budget.over() or N > MAX_DOMAINS:
                return "unknown"
            head = {k: (lo[:batch], hi[:batch]) for k, (lo, hi) in queue.items()}
            queue = {k: (lo[batch:], hi[batch:]) for k, (lo, hi) in queue.items()}
            lo_b, hi_b = head[""]
            sub = balls.select(torch.zeros(lo_b.shape[0], dtype=torch.long, device=lo_b.device)).with_box(lo_b, hi_b)
            ibp = engine.ibp(sub)
            start = {**ibp, **engine.forward_bounds(sub, ibp)} if forward else dict(ibp)
            for name in names:
                start[name] = (torch.maximum(start[name][0], head[name][0]), torch.minimum(start[name][1], head[name][1]))
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
            children = {"": (torch.cat([lo_o, right_lo]), torch.cat([left_hi, hi_o]))}
            for name in names:
                lo_k, hi_k = bounds[name][0][open_], bounds[name][1][open_]
                children[name] = (torch.cat([lo_k, lo_k]), torch.cat([hi_k, hi_k]))
            queue = {k: (torch.cat([children[k][0], lo]), torch.cat([children[k][1], hi])) for k, (lo, hi) in queue.items()}
    return "verified"


def _tighten_intermediate(engine, inset, bounds, budget, iterations, lr=0.25, max_alpha=4_000_000):
    """Tighter intermediate bounds, layer by layer, by alpha-CROWN with slopes optimised for each
    bounded neuron separately (each neuron's bound is then close to its LP-relaxation bound);
    every iterate is sound, the per-neuron best is kept. Updates `bounds` in place."""
    B = inset.batch
    upstream = 0
    relu_inputs = {n.inputs[0]: int(torch.tensor(engine.shapes[n.output]).prod()) for n in engine.relu_nodes}
    for name in engine.pre_nodes:
        if budget.over():
            break
        lo, hi = bounds[name]
        size = lo[0].numel()
        if name != engine.input_name and name not in engine.affine_only and iterations > 0:
            lo_f, hi_f = lo.reshape(B, size), hi.reshape(B, size)
            index, eye = engine.neurons_to_bound(name, lo_f, hi_f)
            k = int(index.numel())
            if k:
                shape = engine.shapes[name]
                A = torch.cat([eye, -eye]).reshape((1, 2 * k) + shape).expand((B, 2 * k) + shape)
                groups = 2 * k if 2 * k * B * max(upstream, 1) <= max_alpha else 2
                alphas: dict = {}
                best = maximise_bound(lambda: engine.lower_bound(name, A, inset, bounds, alphas, target_groups=groups),
                                      alphas, iterations, lr, budget)
                lo_new = lo_f.index_copy(1, index, torch.maximum(lo_f[:, index], best[:, :k]))
                hi_new = hi_f.index_copy(1, index, torch.minimum(hi_f[:, index], -best[:, k:]))
                bounds[name] = (lo_new.reshape(lo.shape), hi_new.reshape(hi.shape))
        upstream += relu_inputs.get(name, 0)
    return bounds


def _root_relu_bounds(engine, rows, inset, ibp, budget, iterations, lr=0.25):
    """Root intermediate bounds for ReLU splitting (CROWN, tightened by _tighten_intermediate),
    then the final pass's slopes optimised on them. Returns (bounds, final-pass alphas
    {key: (1, S, *shape)}, row lower bounds (1, S))."""
    with torch.no_grad():
        bounds = engine.intermediate_bounds(inset, "crown", None, None, ibp)
        row_lb = rows_lower_bound(engine, inset, rows, bounds)
    if iterations <= 0 or bool((rows.combine(row_lb) > 0).all()):
        return bounds, {}, row_lb
    bounds = _tighten_intermediate(engine, inset, bounds, budget, iterations, lr)
    alphas: dict = {}
    final: dict = {}

    def keep_slopes(lb, best):  # the slopes of an iterate at least as good as all before it
        if bool((rows.combine(lb) >= rows.combine(best)).all()):
            final.clear()
            final.update({k: v.detach().clone() for k, v in alphas.items()})

    best = maximise_bound(lambda: rows_lower_bound(engine, inset, rows, bounds, alphas), alphas, iterations, lr,
                          budget, done=lambda best: bool((rows.combine(best) > 0).all()), best=row_lb,
                          on_bound=keep_slopes)
    return bounds, final, best


def _optimise_domains(engine, rows, sub, bounds, alphas, betas, row_lb, iterations, budget, lr=0.1):
    """Better final-pass row bounds of split sub-domains: ReLU slopes `alphas` (initialised from
    the parent's) and split multipliers `betas` >= 0 by projected gradient ascent; the best bound
    per row is kept (every iterate is sound). Updates alphas / betas in place."""
    params = list(alphas.values()) + [b for b, _ in betas.values()]
    for p in params:
        p.requires_grad_(True)
    best = row_lb
    optimiser = Adam(params, lr=lr)
    for _ in range(iterations):
        if budget.over():
            break
        with torch.enable_grad():
            lb = rows_lower_bound(engine, sub, rows, bounds, alphas, None, betas)
            best = torch.maximum(best, lb.detach())
            (-lb.clamp(max=1.0).sum()).backward()
            optimiser.step()
        with torch.no_grad():
            for value in alphas.values():
                value.clamp_(0.0, 1.0)
            for value, _ in betas.values():
                value.clamp_(min=0.0)
    for p in params:
        p.requires_grad_(False)
    return best


def relu_split(engine: BoundEngine, rows: SpecRows, inset: InputRegion, budget,
               batch: int = 256, exact_spec: bool = True, iterations: int = 3,
               root_iterations: int = 20) -> str:
    """'verified' | 'falsified' | 'unknown' for one input set (B = 1) by ReLU splitting.

    The root's intermediate bounds are tightened once (alpha-CROWN with optimised intermediate
    slopes); a sub-domain keeps its parent's intermediate bounds (sound: the sub-domain is a
    subset) with the split neuron clamped, so a step only re-bounds the spec rows, with the
    parent's optimised slopes and multipliers as the starting point.
    """
    pre = [n.inputs[0] for n in engine.relu_nodes]
    if not pre:
        return "unknown"
    if not (rows.on_logits and iterations > 0):
        return _relu_split_recompute(engine, rows, inset, budget, batch)
    with torch.no_grad():
        ibp = engine.ibp(inset)
    bounds, root_alphas, row_lb = _root_relu_bounds(engine, rows, inset, ibp, budget.share(0.3), root_iterations)
    if bool((rows.combine(row_lb) > 0).all()):
        return "verified"
    if rows.n_groups > 1:
        # s = min over groups: each group positive on the whole set proves s > 0; a group alone
        # needs fewer splits, and each step bounds only its rows
        group_lb = torch.full((1, rows.n_groups), float("-inf"), dtype=row_lb.dtype, device=row_lb.device)
        group_lb = group_lb.scatter_reduce(1, rows.group[None], row_lb, reduce="amax")[0]
        for j in group_lb.argsort(descending=True).tolist():
            if float(group_lb[j]) > 0:
                continue
            idx = (rows.group == j).nonzero().flatten()
            sub_rows = SpecRows(rows.C[idx], rows.d[idx], torch.zeros_like(idx), 1, rows.on_logits)
            verdict = _relu_bab(engine, sub_rows, inset, budget, batch, iterations, bounds,
                                {k: v[:, idx] for k, v in root_alphas.items()}, row_lb[:, idx])
            if verdict != "verified":
                return verdict
        return "verified"
    return _relu_bab(engine, rows, inset, budget, batch, iterations, bounds, root_alphas, row_lb)


def _relu_bab(engine, rows, inset, budget, batch, iterations, bounds, root_alphas, row_lb) -> str:
    """The ReLU-splitting loop from the root's bounds, slopes and row bounds (rows on the logits:
    slopes and split multipliers optimised per sub-domain)."""
    pre = [n.inputs[0] for n in engine.relu_nodes]
    S = row_lb.shape[1]
    names = list(bounds)
    sizes = [bounds[name][0][0].numel() for name in pre]
    offsets = [sum(sizes[:i]) for i in range(len(pre))]
    dev = row_lb.device
    # the open domains, batched: intermediate bounds, split signs, slopes, multipliers, choice
    D_lo = {k: bounds[k][0] for k in names}
    D_hi = {k: bounds[k][1] for k in names}
    D_split = {k: torch.zeros((1,) + engine.shapes[k], dtype=torch.int8, device=dev) for k in pre}
    akeys = [(n.output, engine.output_name) for n in engine.relu_nodes]
    D_alpha = {}
    for node, key in zip(engine.relu_nodes, akeys):
        if key in root_alphas:
            D_alpha[key] = root_alphas[key]
        else:
            lo, hi = bounds[node.inputs[0]]
            D_alpha[key] = default_alpha(lo, hi).unsqueeze(1).expand((1, S) + tuple(lo.shape[1:])).clone()
    D_beta = {k: torch.zeros((1, S) + engine.shapes[k], dtype=engine.dtype, device=dev) for k in pre}
    with torch.no_grad():
        record: dict = {}
        rows_lower_bound(engine, inset, rows, bounds, D_alpha, record)
        D_choice = _choose(rows, pre, bounds, D_split, record, row_lb)
    if bool((D_choice < 0).any()):
        return "unknown"
    N = 1
    parents = max(1, batch // 2)
    with torch.no_grad():
        while N:
            if budget.over() or N > MAX_DOMAINS:
                return "unknown"
            P = min(parents, N)
            take = lambda d: {k: v[:P] for k, v in d.items()}  # noqa: E731
            rest = lambda d: {k: v[P:] for k, v in d.items()}  # noqa: E731
            p_lo, p_hi, p_split, p_alpha, p_beta = take(D_lo), take(D_hi), take(D_split), take(D_alpha), take(D_beta)
            p_choice = D_choice[:P]
            D_lo, D_hi, D_split, D_alpha, D_beta = rest(D_lo), rest(D_hi), rest(D_split), rest(D_alpha), rest(D_beta)
            D_choice = D_choice[P:]
            N -= P
            # children: the first P with x_i >= 0, the next P with x_i <= 0
            B = 2 * P
            choice = torch.cat([p_choice, p_choice])
            sign = torch.cat([torch.ones(P, dtype=torch.int8, device=dev), -torch.ones(P, dtype=torch.int8, device=dev)])
            c_lo, c_hi, c_split = _apply_split(pre, offsets, sizes, *(
                {k: torch.cat([v, v]) for k, v in d.items()} for d in (p_lo, p_hi, p_split)), choice, sign)
            c_alpha = {k: torch.cat([v, v]) for k, v in p_alpha.items()}
            c_beta = {k: torch.cat([v, v]) for k, v in p_beta.items()}
            sub = inset.select(torch.zeros(B, dtype=torch.long, device=dev))
            cb = {k: (c_lo[k], c_hi[k]) for k in names}
            record = {}
            betas = {k: (c_beta[k], c_split[k]) for k in pre}
            row_lb = rows_lower_bound(engine, sub, rows, cb, c_alpha, record, betas)
            if not bool((rows.combine(row_lb) > 0).all()):
                row_lb = _optimise_domains(engine, rows, sub, cb, c_alpha, betas, row_lb, iterations, budget)
                record = {}
                row_lb = torch.maximum(row_lb, rows_lower_bound(engine, sub, rows, cb, c_alpha, record, betas))
            open_ = ~(rows.combine(row_lb) > 0)
            if not bool(open_.any()):
                continue
            keep = open_.nonzero().flatten()
            sel = lambda d: {k: v[keep] for k, v in d.items()}  # noqa: E731
            record = {k: (c[keep], bu[keep]) for k, (c, bu) in record.items()}
            n_lo, n_hi, n_split = sel(c_lo), sel(c_hi), sel(c_split)
            n_choice = _choose(rows, pre, {k: (n_lo[k], n_hi[k]) for k in names}, n_split, record, row_lb[keep])
            if bool((n_choice < 0).any()):  # nothing left to split: the relaxation is exact there
                return "unknown"
            D_lo = {k: torch.cat([D_lo[k], n_lo[k]]) for k in names}
            D_hi = {k: torch.cat([D_hi[k], n_hi[k]]) for k in names}
            D_split = {k: torch.cat([D_split[k], n_split[k]]) for k in pre}
            D_alpha = {k: torch.cat([D_alpha[k], c_alpha[k][keep]]) for k in D_alpha}
            D_beta = {k: torch.cat([D_beta[k], c_beta[k][keep]]) for k in D_beta}
            D_choice = torch.cat([D_choice, n_choice])
            N += int(keep.numel())
    return "verified"


def _split_positions(pre, offsets, sizes, choice):
    """(name, domain indices, flat neuron indices, mask over the domains) per pre-ReLU node for
    `choice` (B,), an index into the concatenated pre-ReLU nodes."""
    ar = torch.arange(choice.shape[0], device=choice.device)
    for name, off, size in zip(pre, offsets, sizes):
        mine = (choice >= off) & (choice < off + size)
        if bool(mine.any()):
            yield name, ar[mine], choice[mine] - off, mine


def _apply_split(pre, offsets, sizes, lo_d, hi_d, split_d, choice, sign):
    """Split neuron `choice` (B,) (index into the concatenated pre-ReLU nodes) of each domain to
    `sign` (B,) (+1: x >= 0, -1: x <= 0), in place on the given (fresh) tensors: the split
    sign is recorded and the neuron's bound clamped at 0 (sound on that half)."""
    B = choice.shape[0]
    for name, idx, flat, mine in _split_positions(pre, offsets, sizes, choice):
        split_d[name].reshape(B, -1)[idx, flat] = sign[mine]
        lo, hi = lo_d[name].reshape(B, -1), hi_d[name].reshape(B, -1)
        up = sign[mine] > 0
        lo[idx[up], flat[up]] = lo[idx[up], flat[up]].clamp_min(0.0)
        hi[idx[~up], flat[~up]] = hi[idx[~up], flat[~up]].clamp_max(0.0)
    return lo_d, hi_d, split_d


def _choose(rows, pre, bounds, splits, record, row_lb) -> torch.Tensor:
    """The neuron to split per domain (B,), as an index into the concatenated pre-ReLU nodes
    (-1: no unstable neuron left): the largest contribution of its upper line's intercept to the
    worst row's bound (BaBSR-like), ties by width."""
    B = row_lb.shape[0]
    worst = rows.critical_row(row_lb)
    scores = []
    for name in pre:
        lo, hi = bounds[name]
        coef, bu = record[name]
        unstable = ((lo < 0) & (hi > 0) & (splits[name] == 0)).reshape(B, -1)
        view = worst.view(B, 1, *([1] * (coef.dim() - 2))).expand(B, 1, *coef.shape[2:])
        c = coef.gather(1, view).squeeze(1)
        intercept = bu[:, 0] if bu.shape[1] == 1 else bu.gather(1, view).squeeze(1)
        score = (-(c.clamp(max=0)) * intercept).reshape(B, -1) + 1e-6 * (hi - lo).reshape(B, -1)
        scores.append(torch.where(unstable, score, torch.full_like(score, -1.0)))
    value, index = torch.cat(scores, dim=1).max(dim=1)
    return torch.where(value >= 0, index, torch.full_like(index, -1))


def _relu_split_recompute(engine: BoundEngine, rows: SpecRows, inset: InputRegion, budget,
                          batch: int = 256) -> str:
    """ReLU splitting that recomputes every sub-domain's intermediate bounds by CROWN (for row
    bounds the slope and multiplier optimisation does not apply to: rows on probabilities)."""
    pre = [n.inputs[0] for n in engine.relu_nodes]
    if not pre:
        return "unknown"
    sizes = [int(torch.tensor(engine.shapes[name]).prod()) for name in pre]
    offsets = [sum(sizes[:i]) for i in range(len(pre))]
    # the open domains (N, *shape) per pre-ReLU node: split signs only, bounds are recomputed
    queue = {name: torch.zeros((1,) + engine.shapes[name], dtype=torch.int8, device=engine.device) for name in pre}
    with torch.no_grad():
        while (N := queue[pre[0]].shape[0]):
            if budget.over() or N > MAX_DOMAINS:
                return "unknown"
            splits = {name: v[:batch] for name, v in queue.items()}
            queue = {name: v[batch:] for name, v in queue.items()}
            B = splits[pre[0]].shape[0]
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
            keep = (~(s_lb > 0) & ~empty).nonzero().flatten()
            if not keep.numel():
                continue
            choice = _choose(rows, pre, bounds, splits, record, row_lb)[keep]
            if bool((choice < 0).any()):  # nothing left to split: the relaxation is exact there
                return "unknown"
            # children: x_i >= 0 for the first len(keep), x_i <= 0 for the rest
            children = {name: torch.cat([splits[name][keep], splits[name][keep]]) for name in pre}
            choice = torch.cat([choice, choice])
            sign = torch.cat([torch.ones(keep.numel(), dtype=torch.int8, device=choice.device),
                              -torch.ones(keep.numel(), dtype=torch.int8, device=choice.device)])
            for name, idx, flat, mine in _split_positions(pre, offsets, sizes, choice):
                children[name].reshape(choice.shape[0], -1)[idx, flat] = sign[mine]
            queue = {name: torch.cat([queue[name], children[name]]) for name in pre}
    return "verified"


def branch_and_bound(engine: BoundEngine, rows: SpecRows, inset: InputRegion, budget,
                     input_split_max_dim: int = 8, batch: int = 256, exact_spec: bool = True,
                     iterations: int = 3) -> str:
    """Input splitting for small inputs, ReLU splitting otherwise (`iterations` of slope and
    beta optimisation per batch of sub-domains)."""
    if engine.n_inputs <= input_split_max_dim:
        return input_split(engine, rows, inset, budget, max(batch, 256), exact_spec)
    return relu_split(engine, rows, inset, budget, batch, exact_spec, iterations)
