"""Minimal-norm attacks: FAB (`fab_attack`, below) and the fast minimum-norm (FMN) loop of Pintor et al. (NeurIPS 2021),
written for saferisk's properties, norms (L-inf, L2, L1, per-feature `unit`) and domain box.

Each run (a start and one objective: the property's w - c, or one term g_t of
w - c = min_j g_j(f(x)), e.g. the margin to one competing class) keeps a ball radius eps_k and
alternates, for k = 0..K-1 with gamma_k, alpha_k cosine-annealed:

  eps_k = min(eps_{k-1}, ||d_best||) (1 - gamma_k)        if x_k violates (shrink the ball)
        = eps_{k-1} (1 + gamma_k)                          if a violation was seen before
        = ||x_k - x0|| + |l(x_k)| / ||grad l(x_k)||_q      else (the linearised boundary distance)
  x_{k+1} = proj_{B_p(x0, eps_k) ∩ box}(x_k - alpha_k eps_k dir_p(grad l(x_k)))

with dir_p the steepest-descent direction of the p-norm (`saferisk.search.gradient`) and q the
dual norm. Steps are relative to eps_k, so the loop is scale-free (inputs need not lie in [0, 1]).
Each run has a step kind (`STEEPEST`; for L-inf also `PROPORTIONAL`; `RADIUS`: the paper's step
x_k - a_k R grad / ||grad||_2, a_k from RADIUS_ALPHA, in units of the searched radius R, not of eps_k).
All runs go through the model in one batch per step; every point is evaluated by the
`Evaluator`, so the closest violation reaches its observers (the witness `ViolationTracker`).
Gradients come from the model, or from finite differences (`Evaluator.gradient_estimate`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from saferisk import norms
from saferisk.properties.base import BoundProperty
from saferisk.search.gradient import steepest_direction, term_gradients
from saferisk.search.region import Evaluator, Region

GAMMA = (0.05, 0.001)  # initial and final relative change of the ball radius per step (the paper's)
# Step kinds of the runs: the steepest-descent direction of the norm (sign for L-inf); the
# gradient-proportional L-inf step (the unit gradient times sqrt(n), `_StepKinds.step`); the
# paper's own step, alpha_k x R along the L2-normalised gradient (R the searched radius;
# RADIUS_ALPHA). Steps relative to eps_k fail where the ball is a large part of the box: whole-ball
# L-inf steps then hop between vertices without ever violating (a Conv1d/pooling net with its
# boundary 0.35 away in [0, 1]^24: 0.56 with the other kinds alone, 0.35 with this one, as
# foolbox's FMN).
STEEPEST, PROPORTIONAL, RADIUS = 0, 1, 2
RADIUS_ALPHA = (1.0, 0.01)  # initial and final step of RADIUS runs, in units of the searched radius
# initial and final step relative to the ball radius, per norm (measured on the witness
# benchmark: whole-radius steps suit L-inf, whose projection only clips; L2/L1 do better with
# a quarter)
ALPHA = {"inf": (1.0, 0.01), "2": (0.25, 0.0025), "1": (0.25, 0.0025)}
# Successive halving of the runs: at each (fraction of the steps, ratio), the runs whose reach
# (best violation, or before one the current ball radius) exceeds ratio x the closest violation
# of all runs of their kind group (RADIUS runs apart from the others until the last checkpoint, so
# that neither kind's early lead stops the other's eventual winner; before any violation:
# ratio x the smallest ball radius) stop, and of the others only as many
# as the budget left carries to the next checkpoint, keeping enough for one run to the last step
# (the closest go on); the steps go to the runs that can still win (a far competing class rarely
# does). Measured on the witness benchmark: pruning from 5% of the steps keeps the 70 digits/MNIST
# radii and the CIFAR ones, and halves the CIFAR runs' rows (L2: no violation seen by then); these
# ratios (were 1.5, 1.2, 1.1) keep them too, with 8.2 instead of 9.9 runs per step on the 70; any
# tighter (1.25/1.08/1.03, or the checkpoints at 3% or 10%/30%) loses one of them
PRUNE_SCHEDULE = ((0.05, 1.3), (0.15, 1.1), (0.5, 1.05))
# ... for runs on finite-difference gradients, whose noisy early ball radii would stop the run
# that wins (mnist-net_256x2, L2: 0.632 instead of 0.527 under PRUNE_SCHEDULE)
BLACK_BOX_PRUNE_SCHEDULE = ((0.05, math.inf), (0.15, 1.5), (0.5, 1.1))


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * k / max(steps, 1))) / 2


def unit_gradient(grad: torch.Tensor, unit: torch.Tensor | None) -> torch.Tensor:
    """The gradient normalised to L2 length 1 in the region's scaled coordinates (x / unit),
    mapped back: a step of `length` along it moves ||(x' - x) / unit||_2 = length (RADIUS runs)."""
    g = grad * unit if unit is not None else grad
    d = g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-30)
    return d * unit if unit is not None else d


def minimal_norm_attack(prop: BoundProperty, region: Region, evaluator: Evaluator, starts: torch.Tensor,
                        targets: torch.Tensor | None, steps: int, stop: Callable[[], bool] | None = None,
                        kinds: torch.Tensor | None = None,
                        schedule: tuple[tuple[float, float], ...] = PRUNE_SCHEDULE,
                        apart: torch.Tensor | None = None) -> None:
    """FMN runs from each start row (targets: the term g_t each row minimises, -1 for w - c
    itself; None: all rows on w - c); the closest violations land in the evaluator's observers.
    `kinds` (per row; None: all STEEPEST): the step each run takes: STEEPEST (the norm's
    steepest-descent direction, alpha_k eps_k long), PROPORTIONAL (L-inf: the unit gradient times sqrt(n)
    instead of the sign, FMN's own L-inf step; neither is better everywhere) or RADIUS (the paper's
    step: alpha_k R along the L2-normalised gradient, R the region's radius, alpha_k from
    RADIUS_ALPHA; a region without a finite radius: STEEPEST). `schedule`: the checkpoints of the
    successive halving of the runs (PRUNE_SCHEDULE); RADIUS runs are pruned among themselves
    until the last checkpoint (where the budget cuts, it cuts all runs by their reach), and so
    are the rows of `apart` (bool per row; e.g. runs started from another attack's violation,
    whose early lead says nothing about the runs from x0)."""
    if steps <= 0:
        return
    x0, norm = region.x0, region.norm
    spec = prop.spec()
    if targets is None or spec is None or not spec.exact:
        targets = torch.full((starts.shape[0],), -1, dtype=torch.long)
    targets = targets.to(x0.device)
    if kinds is None:
        kinds = torch.full((starts.shape[0],), STEEPEST, dtype=torch.long)
    kinds = kinds.to(x0.device)
    apart = torch.zeros_like(kinds, dtype=torch.bool) if apart is None else apart.to(x0.device)
    if not math.isfinite(float(region.radius)):
        kinds = torch.where(kinds == RADIUS, STEEPEST, kinds)
    x = region.project(starts.to(x0))
    n_rows = x.shape[0]
    # (an infinite radius caps at the largest float: steps stay finite and the box clips them)
    cap = torch.full((n_rows,), min(float(region.radius), torch.finfo(x0.dtype).max), dtype=x0.dtype, device=x0.device)
    eps = cap.clone()
    best = torch.full_like(eps, float("inf"))
    seen = torch.zeros(n_rows, dtype=torch.bool, device=x0.device)
    all_seen = False  # every run has seen a violation (then the boundary estimate is not needed)
    step_kinds = _StepKinds(norm, kinds)
    checkpoints = {int(steps * fraction): ratio for fraction, ratio in schedule} if n_rows > 1 else {}
    loss = None
    for k in range(steps):
        if evaluator.exhausted or (stop is not None and stop()):
            return
        if k in checkpoints:
            following = min([c for c in checkpoints if c > k], default=steps)
            affordable = _affordable_rows(evaluator, following - k, steps - following)
            # (RADIUS runs and `apart` ones each in their group until the last checkpoint, then
            # all compare: one far behind stops)
            groups = (kinds == RADIUS).to(torch.long) + 2 * apart.to(torch.long) if k < max(checkpoints) else None
            keep = _survivors(seen, best, eps, checkpoints[k], affordable, loss, groups)
            if not bool(keep.all()):
                x, eps, best, seen, cap = x[keep], eps[keep], best[keep], seen[keep], cap[keep]
                targets, kinds, apart = targets[keep], kinds[keep], apart[keep]
                step_kinds = _StepKinds(norm, kinds)
        distance = region.distance(x)
        loss, grad, finite = term_gradients(prop, spec, evaluator, x, targets, distance)
        if grad is None:
            return
        grad = torch.nan_to_num(grad)
        violating = loss <= 0 if finite is None else finite & (loss <= 0)
        best = torch.where(violating, torch.minimum(best, distance), best)
        gamma, alpha = _cosine(*GAMMA, k, steps), _cosine(*ALPHA[norm], k, steps)
        if all_seen:  # (no NaN can arise: eps and best are finite)
            eps = torch.where(violating, torch.minimum(eps, best) * (1 - gamma), eps * (1 + gamma)).minimum(cap)
        else:
            seen |= violating
            scaled = grad * region.unit if region.unit is not None else grad
            boundary = distance + loss.abs() / norms.dual_norm(scaled, norm).clamp_min(1e-30)
            eps = torch.where(violating, torch.minimum(eps, best) * (1 - gamma),
                              torch.where(seen, eps * (1 + gamma), boundary))
            eps = torch.fmin(eps, cap)  # (eps >= 0 or NaN/inf from the estimate: those become the cap)
            all_seen = _every_run_seen(seen)
        radius_step = None if step_kinds.radius is None else _cosine(*RADIUS_ALPHA, k, steps) * float(region.radius)
        step = step_kinds.step(x, grad, alpha * eps, radius_step, norm, region.unit)
        x = norms.project(step, x0, eps, norm, region.lower, region.upper, region.unit)
    evaluator(x)  # the last step's points


class _StepKinds:
    """The step kinds of the runs (`kinds`), for `minimal_norm_attack`: the directions of the
    kinds present only, a select where they mix; `radius`: the RADIUS rows (None: none)."""

    def __init__(self, norm: str, kinds: torch.Tensor):
        radius = kinds == RADIUS
        self.radius = radius.unsqueeze(1) if bool(radius.any()) else None
        proportional = (kinds == PROPORTIONAL) if norm == "inf" else torch.zeros_like(radius)
        self.proportional = proportional.unsqueeze(1)
        self.any_proportional = bool(proportional.any())
        self.all_proportional = self.any_proportional and bool((proportional | radius).all())

    def step(self, x: torch.Tensor, grad: torch.Tensor, length: torch.Tensor, radius_length: float | None,
             norm: str, unit: torch.Tensor | None) -> torch.Tensor:
        """x minus each row's step: `length` (per row) along its direction (steepest descent or
        gradient-proportional), RADIUS rows `radius_length` along the unit gradient (the L2-normalised
        gradient, shared with the gradient-proportional direction)."""
        unit_grad = unit_gradient(grad, unit) if self.any_proportional or self.radius is not None else None
        if not self.any_proportional:
            direction = steepest_direction(grad, norm, unit)
        else:
            # (each feature moves in proportion to its gradient, where the sign step moves all alike;
            # the projection onto the L-inf ball then saturates the features that matter most)
            proportional = unit_grad * math.sqrt(grad.shape[1])
            # (both directions on every row and a select: cheaper than indexing the rows)
            direction = proportional if self.all_proportional else torch.where(
                self.proportional, proportional, steepest_direction(grad, norm, unit))
        step = x - length.unsqueeze(1) * direction
        if self.radius is not None:  # the paper's steps: alpha_k R along the L2-normalised gradient
            step = torch.where(self.radius, x - radius_length * unit_grad, step)
        return step


def _every_run_seen(seen: torch.Tensor) -> bool:
    """Every run has seen a violation: from then on the ball radii follow the violations alone
    (the linearised boundary distance is not needed)."""
    return bool(seen.all())


PRUNED_RUNS = 2  # runs expected to go on after the first ratio checkpoint (to size the steps)


def pruned_rows_per_step(runs: int, schedule: tuple[tuple[float, float], ...] = PRUNE_SCHEDULE) -> float:
    """Mean runs per step of `runs` FMN runs under `schedule`, expecting PRUNED_RUNS of them
    to pass the first checkpoint with a finite ratio: to size the steps of a budget."""
    first = min((fraction for fraction, ratio in schedule if math.isfinite(ratio)), default=1.0)
    return first * runs + (1 - first) * min(runs, PRUNED_RUNS)


def _affordable_rows(evaluator: Evaluator, steps_now: int, steps_after: int) -> int | None:
    """How many runs the budget left (phase and total) carries for `steps_now` steps, keeping
    enough for one run over the `steps_after` steps beyond (each run and step: one point plus
    its gradient estimate's rows); None: no budget."""
    limits = [b for b in (evaluator.budget, None if evaluator.phase_budget is None
                          else evaluator.phase_start + evaluator.phase_budget) if b is not None]
    if not limits:
        return None
    per_step = 1 + evaluator.gradient_rows
    left = min(limits) - evaluator.evaluations - steps_after * per_step
    return max(left, 0) // max(steps_now * per_step, 1)


def _survivors(seen: torch.Tensor, best: torch.Tensor, eps: torch.Tensor, ratio: float,
               affordable: int | None, loss: torch.Tensor | None = None,
               apart: torch.Tensor | None = None) -> torch.Tensor:
    """The runs that go on at a checkpoint: those whose reach (best violation, or before one the
    current ball radius) is within `ratio` of the closest violation of all runs (before any, of
    the smallest ball radius), and of those at most `affordable` (the closest reaches; at least
    one run). Before any violation, when every ball radius is the same (e.g. all at the cap: the
    linearised boundary lies beyond the ball), the radii say nothing: the half of the runs with the
    smallest objective l (`loss`, the last step's; non-finite last) go on (a run on w - c, the
    smallest term, is favoured over one on a single term at the same point). `apart` (a group
    per run, bool or int): runs are compared only with those of their group (the budget's cut
    then takes the closest reaches of all)."""
    groups = None if apart is None else apart.unique()
    if groups is not None and groups.numel() > 1:
        keep = torch.zeros_like(seen)
        for group in groups:
            rows = (apart == group).nonzero()[:, 0]
            keep[rows] = _survivors(seen[rows], best[rows], eps[rows], ratio, None,
                                    None if loss is None else loss[rows])
        return _closest(keep, torch.where(seen, best, eps), affordable)
    any_seen = bool(seen.any())
    reach = torch.where(seen, best, eps)
    keep = reach <= (best.min() if any_seen else eps.min()) * ratio
    if (loss is not None and math.isfinite(ratio) and keep.shape[0] > 1 and not any_seen
            and bool(eps.max() <= eps.min())):
        reach = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, float("inf")))  # the tie broken by l
        keep = torch.zeros_like(keep)
        keep[torch.argsort(reach, stable=True)[: (keep.shape[0] + 1) // 2]] = True
    return _closest(keep, reach, affordable)


def _closest(keep: torch.Tensor, reach: torch.Tensor, affordable: int | None) -> torch.Tensor:
    """`keep`, cut to the `affordable` runs of smallest reach (None: no cut; at least one run)."""
    if affordable is not None and int(keep.sum()) > max(affordable, 1):
        order = torch.argsort(torch.where(keep, reach, torch.full_like(reach, float("inf"))), stable=True)
        keep = torch.zeros_like(keep)
        keep[order[: max(affordable, 1)]] = True
    return keep


FAB_ALPHA_MAX = 0.1  # largest weight of the step from x0 (the paper's alpha_max)
FAB_ETA = 1.05  # extrapolation past the linearised boundary
FAB_BETA = 0.9  # after a violation: x <- x0 + FAB_BETA (x - x0)
FAB_TERMS = 16  # terms g_j linearised per step (the smallest at each point, when there are more)


def fab_term_count(prop: BoundProperty) -> int:
    """Terms FAB linearises per row and step: those of an exact min-of-terms spec, at most
    FAB_TERMS; else 1 (w - c itself)."""
    spec = prop.spec()
    return min(int(spec.A.shape[0]), FAB_TERMS) if spec is not None and spec.exact else 1


def term_jacobian(prop: BoundProperty, evaluator: Evaluator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the terms g_j (B, K), their gradients (B, K, n)) at the rows x: all terms of
    an exact min-of-terms spec (the FAB_TERMS smallest at each row when there are more), else
    K = 1, w - c itself. One batch of B * K rows (`term_gradients`; a model without gradients
    shares one finite-difference Jacobian per distinct row)."""
    spec = prop.spec()
    B, n = x.shape
    count = fab_term_count(prop)
    targets = None
    if spec is not None and spec.exact:
        if count < spec.A.shape[0]:
            with torch.no_grad():
                which = spec.groups(evaluator.outputs(x)[0]).argsort(dim=1)[:, :count]
        else:
            which = torch.arange(count, device=x.device).expand(B, count)
        targets = which.reshape(-1)
    rows = x.detach().repeat_interleave(count, dim=0)
    values, grad, _ = term_gradients(prop, spec, evaluator, rows, targets)
    if grad is None:
        grad = torch.zeros_like(rows)
    return values.reshape(B, count), torch.nan_to_num(grad.detach()).reshape(B, count, n)


def fab_attack(prop: BoundProperty, region: Region, evaluator: Evaluator, starts: torch.Tensor, steps: int,
               stop: Callable[[], bool] | None = None) -> torch.Tensor | None:
    """FAB (Croce & Hein, ICML 2020), untargeted, from each start row: linearise every term g_j
    at x, take the closest linearised boundary (|g_j| / ||grad g_j||_q), and step to it from x
    and from x0 (`min_norm_step`: box-constrained minimal p-norm steps), blended
    x <- (1 - a)(x + eta d) + a (x0 + eta d0), a = min(|d| / (|d| + |d0|), FAB_ALPHA_MAX); after a
    violation, x <- x0 + FAB_BETA (x - x0). One Jacobian of all terms per step, so a model without
    gradients pays one finite-difference Jacobian per row and step. Violations land in the
    evaluator's observers; returns the closest of them (None: none)."""
    from saferisk.search.boundary import min_norm_step

    x0, norm = region.x0, region.norm
    scale = region.unit if region.unit is not None else torch.ones_like(x0)
    x = torch.minimum(torch.maximum(starts.to(x0), region.lower), region.upper)
    closest, closest_distance = None, math.inf
    for _ in range(steps):
        if evaluator.exhausted or (stop is not None and stop()):
            break
        g, a = term_jacobian(prop, evaluator, x)
        a_scaled = a * scale  # gradients in the region's scaled coordinates
        distance = g.abs() / norms.dual_norm(a_scaled.reshape(-1, a.shape[2]), norm).reshape(g.shape).clamp_min(1e-30)
        distance = torch.where(torch.isfinite(distance) & (a.abs().sum(2) > 0), distance, torch.full_like(distance, float("inf")))
        j = distance.argmin(dim=1, keepdim=True)
        g_j = g.gather(1, j).squeeze(1)
        a_j = a_scaled.gather(1, j.unsqueeze(2).expand(-1, 1, a.shape[2])).squeeze(1)
        offset = (x - x0) / scale  # x in scaled coordinates around x0
        room_up0, room_down0 = ((region.upper - x0) / scale).expand_as(x), ((x0 - region.lower) / scale).expand_as(x)
        # (the step from x and the step from x0 in one batch: the same hyperplane, other rooms)
        steps_both = min_norm_step(torch.cat([a_j, a_j]), torch.cat([-g_j, (a_j * offset).sum(1) - g_j]),
                                   torch.cat([room_up0 - offset, room_up0]), torch.cat([room_down0 + offset, room_down0]),
                                   norm)
        step, step0 = steps_both[: x.shape[0]], steps_both[x.shape[0]:]
        size, size0 = norms.length(step, norm), norms.length(step0, norm)
        blend = (size / (size + size0).clamp_min(1e-30)).clamp(max=FAB_ALPHA_MAX).unsqueeze(1)
        moved = (1 - blend) * (offset + FAB_ETA * step) + blend * FAB_ETA * step0
        x = torch.minimum(torch.maximum(x0 + scale * torch.nan_to_num(moved), region.lower), region.upper)
        violating = (evaluator(x) - prop.threshold) <= 0
        if bool(violating.any()):
            nearest, row = region.distance(x).masked_fill(~violating, math.inf).min(dim=0)
            if float(nearest) < closest_distance:
                closest, closest_distance = x[int(row)].clone(), float(nearest)
            x[violating] = x0 + FAB_BETA * (x[violating] - x0)
    return closest
