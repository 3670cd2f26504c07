"""Witnesses: concrete violating inputs (w(f(x)) <= c) inside B_p(x0, r) ∩ domain.

A witness gives the upper bound r* <= ||x - x0||. Search: random sampling, gradient-guided
starts and pattern search minimising w directly (for the uncertainty property this is the
paper's uncertainty-example search: minimise KL). A found violation is moved toward x0: with
gradients (the model's own, or finite-difference estimates for a model run by onnxruntime only,
saferisk.search.finite_difference), by boundary projection (saferisk.search.boundary) and
`tighten` (targeted runs in slightly smaller balls); without, by bisection on the segment, then
on the radius with a fresh local search. Every kept violation exceeds the witness tolerance
(WITNESS_MARGIN of the output scale, plus WITNESS_SLACK); the final input is RE-CHECKED by fresh
forward passes (the model's runtime, onnxruntime on the ONNX file, the graph in float64), each of
which must see that margin, before it is reported (`confirm`).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from saferisk.models.graph import GraphModule
from saferisk.models.model import recheck_outputs
from saferisk.properties.base import BoundProperty, MarginProperty
from saferisk.search.boundary import project_to_boundary, segment_boundary
from saferisk.search.config import MAX_TARGETS, SearchConfig
from saferisk.search.finite_difference import FiniteDifferences, has_gradients
from saferisk.search.gps import pattern_search
from saferisk.search.gradient import gradient_descent
from saferisk.search.minimal_norm import (BLACK_BOX_PRUNE_SCHEDULE, PROPORTIONAL, RADIUS, STEEPEST, fab_attack,
                                         fab_term_count, minimal_norm_attack, pruned_rows_per_step)
from saferisk.search.region import Evaluator, Region
from saferisk.search.square import square_search


# the score-based search (saferisk.search.square) of a model without gradients: iterations and
# restarts (the helper's measurements on mnist-net_256x2 and the digits nets; it stops at the
# first violation, so the iterations cost only where none is found)
SQUARE_ITERATIONS = 1000
SQUARE_RESTARTS = 4
SHRINK_TARGETS = 3  # ... and of each radius-bisection step while shrinking

# Shares of SearchConfig.budget (forward evaluations per input) for each search phase; the
# Lipschitz-metric search gets LIPSCHITZ_BUDGET (saferisk.search.lipschitz).
ATTACK_BUDGET = 0.1
MINIMAL_NORM_BUDGET = 0.3  # the FMN-style runs (`minimal_norm_phase`), before the other searches
BLACK_BOX_MINIMAL_NORM_BUDGET = 0.6  # ... with finite-difference gradients (the runs are most of the work)
BLACK_BOX_FAB_SHARE = 0.25  # of which FAB's share, before the FMN runs
# ... where the estimates reuse Jacobians (anchored, image-size inputs): FAB, one Jacobian of all
# terms per step, beats FMN runs that each move away from the shared anchors (random-weight CIFAR
# ResNet, L-inf: 0.1818 at 0.75 after the shrinking, 0.1956 at 0.25; gradient path 0.1753), and
# there no FMN runs follow: what FAB leaves goes to `tighten`, whose targeted runs inside
# shrinking balls win more per row there (same net, L-inf: 0.2059 -> 0.1949 and 0.1818 -> 0.1816
# on the witness benchmark's two inputs, gradient path 0.1866 and 0.1754; L2 unchanged)
ANCHORED_FAB_SHARE = 0.75
# With the model's gradients and a min-of-terms spec of 2 or more terms (a classifier): FAB from x0
# on this share of attack_steps before the FMN runs, then one FMN run per step kind on w - c from
# FAB's closest violation (pruned among themselves until the last checkpoint), refining FAB's basin.
# The FMN runs from x0 alone ended in a farther basin on nets of the architectures table: a 2-layer
# bi-LSTM (3 classes, L2: 6% and 15% above torchattacks' FAB on seeds 0 and 4) and a MobileNet block
# (10 classes, a seed the benchmark does not hold, L2: 3-11% above on its 3 inputs). FAB alone (20
# steps) brought them to 0.4-2.5% above; with the FMN runs from its point all six lie 0.5-1.0% below
# FAB's radius, with 5 FAB steps as with 10 or 20 (radii equal to 1e-4): FAB finds the basin, the
# FMN runs its closest point. On the witness benchmark's 70 digits/MNIST inputs 68 then reach the
# best reference's crossing (67 before), at 5-20% more time per input. Not for w - c alone (a
# property without a spec, 2 classes): the uncertainty property on the digits nets, 18 witnesses
# on 32 inputs, none closer with it
FAB_SHARE = 1 / 28
SHRINK_BUDGET = 0.4  # black-box shrinking (no gradients, or mode "gps")
PROJECTION_BUDGET = 0.1  # boundary projection; `tighten` then has what is left
SHRINK_TOLERANCE = 1e-4  # relative width at which the radius bisection of a witness stops
# smallest relative gap `tighten` tries to win: finer gains are the boundary projection's. Logged
# round by round on the witness benchmark: no round at a gap below 4e-3 ever won on its 74
# gradient-path inputs; on the 70 digits/MNIST black-box inputs the rounds at 1e-3, 2.5e-4 and
# 6.3e-5 lost 69 of 69 times each (5 won below 1e-4, by < 2e-5 of the radius); the CIFAR inputs
# won at 4e-3 and 8e-3. So no round below 2e-3 runs: a lost first round (4e-3) ends it, and after a
# win (the gap doubles) a lost round quarters the gap down to 2e-3 at least once more. `tighten` with
# 3 rounds was 12-14% of the search time on the digits MLP and CNN and mnist-net_256x2 (cProfile).
# After the minimal-norm runs on the model's own gradients it won nothing on inputs of more than
# ESCAPE_DIMENSION features (session 22, with FAB and FMN from its point: the same radius, bit for bit,
# without it on the witness benchmark's 74 inputs and on 600 inputs of the architectures, seeds 0-2 and
# 5-6, at 4-12% of the time), so it runs there only on finite-difference gradients (one digits input
# 15% farther without it) or where no minimal-norm attack ran
TIGHTEN_TOLERANCE = 2e-3
TIGHTEN_GAP = 4e-3  # first relative gap `tighten` tries to win
ESCAPE_FRACTION = 0.95  # `escape` looks for a violation inside this fraction of the best distance
ESCAPE_ROUNDS = 1
# ... only for inputs of at most this many features, or where no minimal-norm attack ran: its
# runs on every closest term already reach the other pieces of the boundary (no radius of the
# witness benchmark's 74 inputs changed without `escape`; 9% of the time on the digits nets,
# 15% on the CIFAR ResNet), while its samples still find them in a few dimensions (the
# paper's 2-D net)
ESCAPE_DIMENSION = 16
ESCAPE_BUDGET = 0.01  # share of the budget of each `escape` round
CONFIRM_NUDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # outward nudges `confirm` re-checks
# A witness must violate by more than WITNESS_MARGIN x the output scale at x0 (max of the output
# range and the largest |output|): float32 results of another runtime (onnxruntime, another CPU
# or GPU) differ by ~1e-7 relative, so a witness on the boundary itself could be safe there.
WITNESS_MARGIN = 1e-5
# The search and the re-checks keep witnesses (1 + WITNESS_SLACK) x that tolerance past the
# boundary, so that a runtime outside the re-checks (another thread count, CPU or GPU; float32
# results ~1e-7 of the scale apart) still sees a margin above the tolerance itself.
WITNESS_SLACK = 0.25
CONFIRM_BISECTIONS = 8  # re-checks that pull a nudged witness back toward the boundary (`confirm`)


@dataclass
class Witness:
    """A re-checked violating input: x (n,) float64 on CPU, w at x, ||x - x0|| in the region's norm."""

    x: torch.Tensor
    value: float
    distance: float
    evaluations: int = 0
    margin: float = 0.0  # threshold - w(x): how far past the boundary the witness is
    margin_required: float = 0.0  # the WITNESS_MARGIN tolerance it had to exceed
    rechecked_by: str = ""  # the runtimes whose fresh forward pass confirmed it


class ViolationTracker:
    """Observer keeping the violating point closest to x0 among everything evaluated (give it a
    `MarginProperty` to keep only violations by more than its margin)."""

    takes_distance = True  # (the Evaluator hands over the rows' distances where the search has them)

    def __init__(self, prop: BoundProperty, region: Region):
        self.prop, self.region = prop, region
        self.best_x: torch.Tensor | None = None
        self.best_distance = float("inf")

    def __call__(self, x: torch.Tensor, w: torch.Tensor, distance: torch.Tensor | None = None) -> None:
        violating = w <= self.prop.threshold
        if distance is not None:  # (the search's own distances: one masked minimum)
            closest, row = torch.where(violating, distance, math.inf).min(dim=0)
        else:
            rows = violating.nonzero()[:, 0]
            if rows.shape[0] == 0:
                return
            closest, k = self.region.distance(x.index_select(0, rows)).min(dim=0)
            row = rows[k]
        if float(closest) < self.best_distance:
            self.best_distance, self.best_x = float(closest), x[int(row)].detach().clone()


def value_objective(prop: BoundProperty, evaluator: Evaluator, differentiable: bool = False):
    """Objective 'w(f(x)) - c' (minimise it to find violations)."""
    def objective(x: torch.Tensor) -> torch.Tensor:
        w = evaluator.with_grad(x) if differentiable else evaluator(x)
        return w - prop.threshold
    return objective


def search_violation(prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
                     generator: torch.Generator, extra_starts: torch.Tensor | None = None,
                     tracker: "ViolationTracker | None" = None, budget_fraction: float | None = None,
                     max_targets: int = MAX_TARGETS, score_based: bool = False) -> None:
    """Run sampling, gradient starts (with `score_based`, for a model without gradients, also the
    Square-style score-based search, saferisk.search.square) and pattern search on w; violations land in the tracker
    the caller attached to `evaluator.observers`. With `tracker`, the search stops as soon as
    it holds a violation inside `region` (shrinking, not deeper violations, tightens the bound)."""
    evaluator.new_phase(budget_fraction)
    objective = value_objective(prop, evaluator)
    stop = None
    if tracker is not None:
        stop = lambda: tracker.best_distance <= region.radius * (1 + 1e-6)
    samples = region.sample(config.n_random, generator)
    if extra_starts is not None:
        samples = torch.cat([extra_starts.to(samples), samples])
    values = objective(samples)
    best = samples[torch.nan_to_num(values, nan=float("inf")).argsort()[: config.n_starts]]
    starts = [best]
    if score_based and not has_gradients(evaluator.model) and config.mode == "fast" and not evaluator.exhausted:
        starts.append(square_search(prop, region, evaluator, generator, SQUARE_ITERATIONS, SQUARE_RESTARTS, stop=stop,
                                    starts=best[:1]))
    if config.gradient_starts and config.mode == "fast" and not evaluator.exhausted:
        try:
            starts.append(gradient_attack(prop, region, evaluator, config, best, stop, max_targets))
        except RuntimeError:  # a model without gradients stays black-box
            pass
    if stop is not None and stop():
        return
    pattern_search(objective, torch.cat(starts), region, config, evaluator, generator, stop=stop)


def smallest_terms(prop: BoundProperty, evaluator: Evaluator, x0: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (CPU) of the `count` smallest terms g_j of w - c = min_j g_j(f(x0)) (e.g. the
    closest competing classes): the targets of targeted runs; empty without an exact
    min-of-terms spec with more than one term."""
    spec = prop.spec()
    if spec is None or not spec.exact or spec.A.shape[0] <= 1 or count <= 0:
        return torch.empty(0, dtype=torch.long)
    with torch.no_grad():
        return spec.closest_terms(evaluator.outputs(x0.unsqueeze(0))[0][0], count).cpu()


def minimal_norm_phase(prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
                       generator: torch.Generator, max_targets: int = MAX_TARGETS) -> None:
    """The minimal-norm attack (saferisk.search.minimal_norm), MINIMAL_NORM_BUDGET of the budget,
    violations landing in the tracker; `runs_per_target` runs per objective (`config.attack_restarts`,
    more where there are few objectives), the first from x0, the others from random points of the
    ball of a tenth of the radius; iterations cut so that the whole annealing schedule fits the phase.
    With the model's own gradients: FMN, all runs in one batch: on w - c and on each of the
    `max_targets` smallest terms, for L-inf each once with sign steps and once with
    gradient-proportional steps, plus `config.attack_restarts` runs on w - c with the paper's steps
    in units of the radius (`_with_radius_runs`; many cheap gradient rows); with 2 or more
    objectives, FAB from x0 first (FAB_SHARE of the steps, and of the phase's budget at most; the
    FMN steps fit what it leaves), and one more FMN run per step kind on w - c from FAB's closest
    violation (pruned apart from the others until the last checkpoint). With finite differences, where each
    gradient row costs a Jacobian, BLACK_BOX_MINIMAL_NORM_BUDGET of the budget: FAB from x0 on
    BLACK_BOX_FAB_SHARE of it (one Jacobian of all terms per step; FAB stops at its share), then
    the same FMN runs (on w - c and each target, gradient-proportional L-inf steps, the run on
    w - c from x0 with the paper's steps instead; restarts only to make up 10 objectives)
    with steps sized for the runs the pruning is expected to leave (`pruned_rows_per_step`); the
    pruning also keeps only as many runs as the budget left carries (the nearest violations win).
    Where the estimates reuse Jacobians (anchored, image-size inputs), FAB alone, on
    ANCHORED_FAB_SHARE.
    A model without gradients (and without finite differences) skips it."""
    if evaluator.gradient_estimate is None and not has_gradients(evaluator.model):
        return
    estimated = evaluator.gradient_estimate is not None
    evaluator.new_phase(BLACK_BOX_MINIMAL_NORM_BUDGET if estimated else MINIMAL_NORM_BUDGET)
    if estimated:
        fab_share = ANCHORED_FAB_SHARE if evaluator.gradient_reuse else BLACK_BOX_FAB_SHARE
        if fab_share > 0:
            share = None if evaluator.phase_budget is None else int(evaluator.phase_budget * fab_share)
            fab_steps = _affordable(config.attack_steps, share, fab_term_count(prop) + 1 + evaluator.gradient_rows)
            end = None if share is None else evaluator.phase_start + share  # estimates of varying cost: stop at the share
            fab_attack(prop, region, evaluator, region.x0.unsqueeze(0), fab_steps,
                       stop=None if end is None else (lambda: evaluator.evaluations >= end))
        if evaluator.gradient_reuse:  # anchored estimates: FAB alone (ANCHORED_FAB_SHARE)
            return
    # (the black-box runs' share: what the phase has left before the targets' forward pass)
    left = (evaluator.phase_start + evaluator.phase_budget - evaluator.evaluations
            if estimated and evaluator.phase_budget is not None else None)
    targets = torch.cat([torch.tensor([-1]), smallest_terms(prop, evaluator, region.x0, max_targets)])
    if estimated:  # (one run per objective, as many objectives as a 10-class model: a row costs a Jacobian)
        starts, targets = _run_starts(region, targets, runs_per_target(1, targets.numel(), max_targets), generator)
        kinds = torch.full((targets.numel(),), PROPORTIONAL if region.norm == "inf" else STEEPEST)
        if region.norm == "inf" and math.isfinite(float(region.radius)):
            kinds[0] = RADIUS  # (w - c from x0: the paper's steps instead of an extra run, whose Jacobians cost)
        per_step = pruned_rows_per_step(targets.numel(), BLACK_BOX_PRUNE_SCHEDULE) * (1 + evaluator.gradient_rows)
        steps = _affordable(config.attack_steps, left, math.ceil(per_step))
        minimal_norm_attack(prop, region, evaluator, starts, targets, steps, kinds=kinds, schedule=BLACK_BOX_PRUNE_SCHEDULE)
        return
    budget = evaluator.phase_budget
    fab_steps = round(config.attack_steps * FAB_SHARE)
    fab_best = None
    if fab_steps > 0 and 1 < targets.numel():  # FAB from x0 first, on its share of the steps
        before = evaluator.evaluations
        fab_best = fab_attack(prop, region, evaluator, region.x0.unsqueeze(0),
                              _affordable(fab_steps, None if budget is None else int(budget * FAB_SHARE),
                                          fab_term_count(prop) + 1))
        budget = None if budget is None else budget - (evaluator.evaluations - before)
    starts, targets = _run_starts(region, targets, runs_per_target(config.attack_restarts, targets.numel(), max_targets),
                                  generator)
    kinds = torch.full((targets.numel(),), STEEPEST)
    if region.norm == "inf":
        starts, targets = starts.repeat(2, 1), targets.repeat(2)
        kinds = torch.cat([kinds, torch.full_like(kinds, PROPORTIONAL)])
    starts, targets, kinds = _with_radius_runs(region, starts, targets, kinds, max(1, int(config.attack_restarts)))
    apart = torch.zeros(targets.numel(), dtype=torch.bool)
    if fab_best is not None:  # FMN runs on w - c from FAB's closest violation: they refine its basin
        rows = ((targets == -1) & (kinds != RADIUS)).nonzero()[:, 0]
        first = [int(rows[kinds[rows] == kind][0]) for kind in kinds[rows].unique().tolist()]  # (one per step kind)
        starts = torch.cat([starts, fab_best.unsqueeze(0).expand(len(first), -1)])
        targets, kinds = torch.cat([targets, targets[first]]), torch.cat([kinds, kinds[first]])
        apart = torch.cat([apart, torch.ones(len(first), dtype=torch.bool)])
    steps = _affordable(config.attack_steps, budget, targets.numel())
    minimal_norm_attack(prop, region, evaluator, starts, targets, steps, kinds=kinds, apart=apart)


def _run_starts(region: Region, targets: torch.Tensor, restarts: int, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts, objectives) of `restarts` runs per objective: the first of each from x0, the
    others from random points of the ball of a tenth of the radius (measured on the witness
    benchmark's 70 digits/MNIST inputs: starts at 0.5-10x the linearised boundary distance of
    w - c at x0 instead reached the best reference on 58-65 of them, a tenth of the radius on 67)."""
    starts = torch.cat([region.x0.unsqueeze(0).expand(targets.numel(), -1),
                        region.shrink(region.radius / 10).sample(targets.numel() * (restarts - 1), generator)])
    return starts, targets.repeat(restarts)


def _with_radius_runs(region: Region, starts: torch.Tensor, targets: torch.Tensor, kinds: torch.Tensor,
                      count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For L-inf with a finite radius: the runs plus `count` RADIUS runs (the paper's step, in units
    of the radius) on w - c, from the starts of the first STEEPEST runs on w - c (x0, then the
    restarts' points): steps relative to the ball hop between its vertices where the ball is a
    large part of the box."""
    if region.norm != "inf" or not math.isfinite(float(region.radius)):
        return starts, targets, kinds
    rows = ((targets == -1) & (kinds == STEEPEST)).nonzero()[:, 0][:count]
    return (torch.cat([starts, starts[rows]]), torch.cat([targets, targets[rows]]),
            torch.cat([kinds, torch.full((rows.numel(),), RADIUS, dtype=kinds.dtype)]))


def runs_per_target(restarts: int, objectives: int, max_targets: int = MAX_TARGETS) -> int:
    """FMN runs per objective (w - c and each target): `restarts`, raised so that every search
    starts at least restarts x (max_targets + 1) runs, as many as a model with max_targets + 1
    competing terms gets: a model with few classes (3 classes: 3 objectives), or a property
    without a spec (w - c alone), searches as widely as a 10-class one."""
    restarts = max(1, int(restarts))
    return max(restarts, math.ceil(restarts * (max_targets + 1) / max(objectives, 1)))


def _affordable(steps: int, budget: int | None, per_step: int) -> int:
    """`steps`, cut so that steps x per_step forward rows (and the last step's points) fit
    `budget` (None: no cap)."""
    return steps if budget is None else min(steps, max(budget // max(per_step, 1) - 1, 0))


def gradient_attack(prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
                    best: torch.Tensor, stop, max_targets: int, steps: int | None = None) -> torch.Tensor:
    """PGD-style descent, all runs in one batch: on w from the centre (gradients far from x0
    can vanish, e.g. on saturated softmax outputs) and from the best random samples, and
    targeted runs from the centre on each of the `max_targets` smallest terms g_j of
    w - c = min_j g_j(z) (e.g. each competing class): the gradient of a min only follows the
    currently smallest term. Returns the best point of every run."""
    starts = [region.x0.unsqueeze(0), best[: max(config.n_starts - 1, 0)]]
    spec = prop.spec()
    targets = smallest_terms(prop, evaluator, region.x0, max_targets)
    if targets.numel():
        starts.append(region.x0.unsqueeze(0).expand(targets.numel(), -1))
    n_plain = starts[0].shape[0] + starts[1].shape[0]
    target_index = torch.cat([torch.zeros(n_plain, dtype=torch.long), targets]).to(region.x0.device).view(-1, 1)

    def objective(x: torch.Tensor) -> torch.Tensor:
        z, w = evaluator.outputs_with_grad(x)
        if targets.numel() == 0:
            return w - prop.threshold
        targeted = spec.groups(z).gather(1, target_index).squeeze(1)
        return torch.cat([w[:n_plain] - prop.threshold, targeted[n_plain:]])

    gx, _ = gradient_descent(objective, torch.cat(starts), region, steps or config.gradient_steps, evaluator, stop=stop)
    return gx


def shrink_witness(prop: BoundProperty, region: Region, x_bad: torch.Tensor, evaluator: Evaluator,
                   config: SearchConfig, generator: torch.Generator, tracker: ViolationTracker) -> None:
    """Move a violation toward x0: bisection on the segment x0 -> x_bad, then bisection on the
    radius, each step a short local search inside the smaller ball. Results land in `tracker`."""
    segment_boundary(prop, region, x_bad.unsqueeze(0), evaluator)  # lands in the tracker
    small = SearchConfig(**{**config.to_dict(), "n_random": max(16, config.n_random // 16),
                            "max_iterations": max(20, config.max_iterations // 5),
                            "gradient_steps": 2 * config.gradient_steps})
    r_lo, r_hi = 0.0, tracker.best_distance
    per_step = SHRINK_BUDGET / max(config.shrink_steps, 1)
    for _ in range(config.shrink_steps):
        if evaluator.total_exhausted or r_hi <= 0:
            break
        r_try = (r_lo + r_hi) / 2 if r_lo > 0 else 0.7 * r_hi
        inner = region.shrink(r_try)
        before = tracker.best_distance
        seed_point = inner.project(tracker.best_x.unsqueeze(0))
        search_violation(prop, inner, evaluator, small, generator, extra_starts=seed_point, tracker=tracker,
                         budget_fraction=per_step, max_targets=SHRINK_TARGETS)
        if tracker.best_distance < before and tracker.best_distance <= r_try * (1 + 1e-6):
            r_hi = tracker.best_distance
        else:
            r_lo = r_try
        if r_hi - r_lo <= SHRINK_TOLERANCE * r_hi:
            break


def required_margin(z0: torch.Tensor) -> float:
    """WITNESS_MARGIN x the output scale at the centre (outputs z0): max(max z - min z, max |z|)."""
    z0 = z0.detach().to(torch.float64).reshape(-1)
    scale = max(float(z0.max() - z0.min()), float(z0.abs().max())) if z0.numel() else 0.0
    return WITNESS_MARGIN * scale if math.isfinite(scale) else 0.0


class RobustProperty(MarginProperty):
    """`prop` made stricter by (1 + WITNESS_SLACK) x `tolerance`: the property the witness
    search and the re-checks run on; `tolerance` is the margin every witness is stated to exceed."""

    def __init__(self, prop: BoundProperty, tolerance: float):
        super().__init__(prop, tolerance * (1 + WITNESS_SLACK))
        self.tolerance = float(tolerance)


def robust(prop: BoundProperty, z0: torch.Tensor) -> RobustProperty:
    """The property the witness search runs on: violations by more than `required_margin(z0)`
    (with WITNESS_SLACK on top)."""
    return RobustProperty(prop, required_margin(z0))


def float64_forward(model):
    """Outputs of flat rows through the model's graph in float64 (a forward pass without float32
    rounding that witnesses must also violate), or None where the graph does not allow it (a
    model run by onnxruntime, or one that already computes in float64)."""
    graph = getattr(model, "graph", None)
    if graph is None or model.dtype == torch.float64:
        return None
    module = GraphModule(graph).to(model.device, torch.float64).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x.to(model.device, torch.float64).reshape(x.shape[0], *model.input_shape))
    return forward


def recheck(model, prop: BoundProperty, region: Region, x: torch.Tensor, tolerance: float = 1e-6,
            forward64=None) -> Witness | None:
    """Fresh forward pass of a candidate: a Witness only if it violates (w <= c; for a
    MarginProperty w <= c - margin), has finite outputs, and lies in the region (domain and
    ball, to `tolerance`); the independent runtime (onnxruntime, `recheck_outputs`) and the
    float64 forward `forward64` (see `float64_forward`), where given, must see the same violation."""
    x = x.detach().to(model.dtype).to(region.x0.device).reshape(1, -1)
    z = model.forward_flat(x).to(torch.float64)
    w = float(prop.value(z)[0])
    inside_box = bool(((x >= region.lower - tolerance) & (x <= region.upper + tolerance)).all())
    distance = float(region.distance(x.to(region.x0.dtype))[0])
    if not (torch.isfinite(z).all() and w <= prop.threshold and inside_box
            and distance <= region.radius * (1 + tolerance) + tolerance):
        return None
    base = prop.base if isinstance(prop, MarginProperty) else prop
    margin = base.threshold - w
    z_ref, rechecked_by = recheck_outputs(model, x)
    others = [] if z_ref is None else [z_ref.to(torch.float64)]
    if forward64 is not None:
        others.append(forward64(x).to("cpu", torch.float64))
        rechecked_by += "+float64"
    for z_other in others:
        w_other = float(prop.value(z_other)[0])
        if not (bool(torch.isfinite(z_other).all()) and w_other <= prop.threshold):
            return None
        margin = min(margin, base.threshold - w_other)
    stated = getattr(prop, "tolerance", getattr(prop, "margin", 0.0))
    return Witness(x.reshape(-1).to("cpu", torch.float64), w, distance, margin=margin,
                   margin_required=stated, rechecked_by=rechecked_by)


def project_violations(prop: BoundProperty, region: Region, evaluator: Evaluator, tracker: ViolationTracker) -> bool:
    """Boundary projection (saferisk.search.boundary) from the closest violation; results land
    in the tracker. False when the model gives no gradients (the caller falls back to the
    black-box shrinking)."""
    evaluator.new_phase(PROJECTION_BUDGET)
    x_bad = tracker.best_x
    try:
        project_to_boundary(prop, region.shrink(max(region.radius, tracker.best_distance)), x_bad, evaluator)
    except RuntimeError:  # a model without gradients stays black-box
        return False
    return True


def tighten(prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
            tracker: ViolationTracker) -> None:
    """Try to beat the closest violation by a relative gap: targeted gradient runs inside the
    ball of radius best * (1 - gap), started from the best violation pulled into that ball;
    a success is projected back onto the boundary and the gap doubles, a failure quarters it,
    down to TIGHTEN_TOLERANCE (`shrink_steps` tries at most; the budget left after the
    projection is theirs)."""
    evaluator.new_phase(None)
    gap = TIGHTEN_GAP
    for _ in range(config.shrink_steps):
        if evaluator.total_exhausted or gap < TIGHTEN_TOLERANCE or tracker.best_x is None:
            break
        best = tracker.best_distance
        inner = region.shrink(best * (1 - gap))
        start = inner.project((region.x0 + (1 - gap) * (tracker.best_x - region.x0)).unsqueeze(0))
        stop = lambda: tracker.best_distance <= inner.radius * (1 + 1e-6)
        gradient_attack(prop, inner, evaluator, config, start, stop, SHRINK_TARGETS, steps=max(1, config.gradient_steps // 4))
        if tracker.best_distance < best * (1 - gap / 2):
            try:
                project_to_boundary(prop, region.shrink(best), tracker.best_x, evaluator)
            except RuntimeError:
                pass
            gap *= 2
        else:
            gap /= 4


def escape(prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
           generator: torch.Generator, tracker: ViolationTracker, rounds: int = ESCAPE_ROUNDS) -> None:
    """After the projection: a search (ESCAPE_BUDGET of the budget) inside the ball of
    ESCAPE_FRACTION times the best distance; a violation there means the projection settled on
    a local piece of the boundary, and the projection restarts from it (at most `rounds` times)."""
    for _ in range(rounds):
        if evaluator.total_exhausted or tracker.best_x is None:
            return
        best = tracker.best_distance
        inner = region.shrink(best * ESCAPE_FRACTION)
        search_violation(prop, inner, evaluator, config, generator, tracker=tracker, budget_fraction=ESCAPE_BUDGET,
                         max_targets=SHRINK_TARGETS)
        if not tracker.best_distance < best * ESCAPE_FRACTION * (1 + 1e-6):
            return
        if project_violations(prop, region, evaluator, tracker):
            tighten(prop, region, evaluator, config, tracker)


def confirm(model, prop: BoundProperty, region: Region, x: torch.Tensor) -> Witness | None:
    """`recheck` of x, else of x pushed away from x0 along the search direction
    (x0 + (1 + eps)(x - x0), eps of CONFIRM_NUDGES): a point found on the boundary can violate
    in one batch, or one runtime, and not in another (float32 results depend on the batch size
    and the kernels). A nudged witness is then pulled back by bisection on eps
    (CONFIRM_BISECTIONS re-checks), kept only while every runtime still sees the violation.
    Every candidate gets its own fresh forward pass; None if no nudge gives a violation of
    `prop` (a `RobustProperty` in the witness search: violations by more than its margin)."""
    forward64 = float64_forward(model)
    nudged = lambda eps: region.project((region.x0 + (1 + eps) * (x - region.x0)).unsqueeze(0))[0]
    previous = None
    for eps in CONFIRM_NUDGES:
        witness = recheck(model, prop, region, x if eps == 0 else nudged(eps), forward64=forward64)
        if witness is None:
            previous = eps
            continue
        lo, hi = previous, eps
        for _ in range(CONFIRM_BISECTIONS if lo is not None else 0):
            mid = (lo + hi) / 2
            closer = recheck(model, prop, region, nudged(mid), forward64=forward64)
            if closer is not None and closer.distance <= witness.distance:
                witness, hi = closer, mid
            else:
                lo = mid
        return witness
    return None


def locate_witness(model, prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
                   generator: torch.Generator, tracker: ViolationTracker) -> Witness | None:
    """Search, shrink and re-check: the closest violating input found in `region`, or None.
    The minimal-norm runs open the search; the search for a first violation (sampling, gradient
    starts, the score-based search, pattern search) runs only where they found none inside it.
    When nothing violates inside the ball, the search overshoots to a ball of OVERSHOOT times
    the radius and shrinks what it finds there: a violation just outside saturated regions
    often leads back inside (the result counts only if it ends inside the original ball).
    The closest violation is then projected onto the boundary; `tighten` and `escape` try to beat
    it (after the minimal-norm runs on the model's own gradients, only on inputs of at most
    ESCAPE_DIMENSION features; `tighten` also on finite-differences gradients).
    A model without gradients (onnxruntime only) gets finite-difference gradients
    (saferisk.search.finite_difference) for the same searches when `config.finite_differences`."""
    estimated = config.finite_differences and not has_gradients(model) and evaluator.gradient_estimate is None
    if estimated:
        differences = FiniteDifferences(evaluator, region)
        evaluator.gradient_estimate, evaluator.gradient_rows = differences.outputs, differences.rows_per_gradient
        evaluator.gradient_reuse = differences.anchored
    try:
        return _locate_witness(model, prop, region, evaluator, config, generator, tracker)
    finally:
        if estimated:
            evaluator.gradient_estimate, evaluator.gradient_rows, evaluator.gradient_reuse = None, 0, False


def _locate_witness(model, prop: BoundProperty, region: Region, evaluator: Evaluator, config: SearchConfig,
                    generator: torch.Generator, tracker: ViolationTracker) -> Witness | None:
    attacked = config.mode == "fast" and config.gradient_starts and config.attack_steps > 0
    if attacked:
        minimal_norm_phase(prop, region, evaluator, config, generator)
    if tracker.best_distance > region.radius * (1 + 1e-6):  # the minimal-norm runs found none inside the ball
        search_violation(prop, region, evaluator, config, generator, tracker=tracker, budget_fraction=ATTACK_BUDGET,
                         score_based=True)
    if tracker.best_x is None and not evaluator.total_exhausted:
        outer = region.shrink(region.radius * OVERSHOOT)
        search_violation(prop, outer, evaluator, config, generator, tracker=tracker, budget_fraction=ATTACK_BUDGET,
                         score_based=True)
    if tracker.best_x is None:
        return None
    projected = config.mode == "fast" and config.gradient_starts and project_violations(prop, region, evaluator, tracker)
    if projected:
        if not attacked or region.n <= ESCAPE_DIMENSION or evaluator.gradient_estimate is not None:
            tighten(prop, region, evaluator, config, tracker)
        if not attacked or region.n <= ESCAPE_DIMENSION:
            escape(prop, region, evaluator, config, generator, tracker)
    if not projected or tracker.best_distance > region.radius * (1 + 1e-6):  # still outside: the black-box way
        shrink_witness(prop, region.shrink(max(region.radius, tracker.best_distance)), tracker.best_x, evaluator,
                       config, generator, tracker)
    witness = confirm(model, prop, region, tracker.best_x)
    if witness is not None:
        witness.evaluations = evaluator.evaluations
    return witness


OVERSHOOT = 2.0


def find_witness(model, prop: BoundProperty, x0, radius: float, norm: str, domain, unit=None,
                 config: SearchConfig | None = None, seed: int = 0) -> Witness | None:
    """The closest re-checked violating input found in B_p(x0, radius) ∩ domain, or None."""
    config = config or SearchConfig()
    dtype, device = model.dtype, model.device
    x0 = torch.as_tensor(x0, dtype=dtype).reshape(-1).to(device)
    unit_t = None if unit is None else torch.as_tensor(unit, dtype=dtype).to(device)
    region = Region(x0, float(radius), norm, domain.lower.to(device, dtype), domain.upper.to(device, dtype), unit_t)
    evaluator = Evaluator(model, prop.value, config.chunk_size, config.budget_for(model))
    generator = torch.Generator().manual_seed(int(seed))
    prop = robust(prop, model.forward_flat(x0.unsqueeze(0))[0])
    tracker = ViolationTracker(prop, region)
    evaluator.observers.append(tracker)
    evaluator(x0.unsqueeze(0))
    return locate_witness(model, prop, region, evaluator, config, generator, tracker)
