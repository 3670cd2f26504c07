"""The FMN-style minimal-norm attack (saferisk.search.minimal_norm): per-row ball projection,
the distance it reaches where the exact minimal distance is known in closed form (a linear
classifier) or by MILP (the digits MLP), and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saferisk import norms
from saferisk.data.domain import Domain
from saferisk.models.load import module_to_onnx, read_forward
from saferisk.models.model import Model
from saferisk.properties import Robustness
from saferisk.search import SearchConfig
from saferisk.norms import dual_norm
from saferisk.search.minimal_norm import PROPORTIONAL, RADIUS, STEEPEST, fab_attack, minimal_norm_attack
from saferisk.search.region import Evaluator, Region
from saferisk.search.witness import ViolationTracker, find_witness

NORMS = ("inf", "2", "1")


@pytest.mark.parametrize("norm", NORMS)
def test_projection_with_a_radius_per_row(norm):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(12, generator=generator, dtype=torch.float64)
    x = x0 + 3 * torch.randn(6, 12, generator=generator, dtype=torch.float64)
    radius = torch.tensor([0.0, 0.01, 0.1, 0.5, 1.0, 100.0], dtype=torch.float64)
    lower, upper = torch.zeros(12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)
    unit = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    projected = norms.project(x, x0, radius, norm, lower, upper, unit)
    assert bool((projected >= lower).all() and (projected <= upper).all())
    assert bool((norms.distance(projected, x0, norm, unit) <= radius * (1 + 1e-12) + 1e-12).all())
    for i, r in enumerate(radius.tolist()):  # the same as one radius for all rows
        one = norms.project(x[i:i + 1], x0, r, norm, lower, upper, unit)
        assert torch.allclose(projected[i:i + 1], one, rtol=0, atol=1e-12)


def _linear_model(n: int, seed: int) -> tuple[Model, nn.Linear]:
    torch.manual_seed(seed)
    layer = nn.Linear(n, 2).double().eval()
    model = Model(read_forward(module_to_onnx(layer.float(), (n,))).graph, name="linear", dtype=torch.float64)
    return model, layer


@pytest.mark.parametrize("attack", ("fmn", "fab"))
@pytest.mark.parametrize("norm", NORMS)
def test_reaches_the_closed_form_distance_of_a_linear_classifier(norm, attack):
    """z = W x + b with two classes: the closest input of the other class is at
    |z_0 - z_1| / ||w_0 - w_1||_q (q the dual norm) in a box wide enough not to bind."""
    n = 20
    model, layer = _linear_model(n, seed=3)
    x0 = torch.zeros(n, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    label = int(z0.argmax())
    prop = Robustness().bind(z0, label)
    w = (layer.weight[label] - layer.weight[1 - label]).detach().double().unsqueeze(0)
    exact = float((z0[label] - z0[1 - label]) / dual_norm(w, norm)[0])
    region = Region(x0, 10 * exact, norm, torch.full((n,), -100.0, dtype=torch.float64),
                    torch.full((n,), 100.0, dtype=torch.float64))
    evaluator = Evaluator(model, prop.value)
    tracker = ViolationTracker(prop, region)
    evaluator.observers.append(tracker)
    if attack == "fmn":
        minimal_norm_attack(prop, region, evaluator, x0.unsqueeze(0), None, steps=200)
    else:
        fab_attack(prop, region, evaluator, x0.unsqueeze(0), steps=20)
    assert tracker.best_x is not None
    assert exact * (1 - 1e-9) <= tracker.best_distance <= exact * 1.01, (tracker.best_distance, exact)


def test_same_seed_same_witness():
    from saferisk.demo import demo_path
    from saferisk.models import load_model

    model = load_model(demo_path("digits_mlp.onnx"))
    x0 = torch.full((64,), 0.5, dtype=model.dtype)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    domain = Domain.scalar(0.0, 1.0, 64)
    runs = [find_witness(model, prop, x0, 0.5, "2", domain, seed=7) for _ in range(2)]
    assert runs[0] is not None and torch.equal(runs[0].x, runs[1].x)


def test_witness_radius_close_to_the_exact_milp_radius_on_the_digits_mlp():
    """On the shipped digits MLP, the L-inf witness lies within 0.1% of the exact radius (MILP,
    benchmarks/exact.py) and never below it."""
    pytest.importorskip("scipy")
    from benchmarks.exact import exact_linf_radius
    from saferisk.demo import demo_path
    from saferisk.models import load_model

    model = load_model(demo_path("digits_mlp.onnx"))
    linear = [node for node in model.graph.nodes if node.op == "linear"]
    weights = [node.params["weight"].double().numpy() for node in linear]
    biases = [node.params["bias"].double().numpy() for node in linear]
    with np.load(demo_path("digits_test.npz")) as data:
        X = data["X"]
    domain = Domain.scalar(0.0, 1.0, 64)
    for x0 in X[:3]:
        x0 = np.asarray(x0, dtype=np.float64)
        z0 = model.forward_flat(torch.as_tensor(x0, dtype=model.dtype).unsqueeze(0))[0]
        decision = int(z0.argmax())
        witness = find_witness(model, Robustness().bind(z0, decision), x0, 0.3, "inf", domain,
                               config=SearchConfig(), seed=0)
        assert witness is not None
        exact = exact_linf_radius(weights, biases, x0, decision, witness.distance * (1 + 1e-6)).radius
        assert exact is not None
        assert exact * (1 - 1e-6) <= witness.distance <= exact * 1.001, (witness.distance, exact)


def test_runs_far_behind_are_pruned_and_the_closest_target_still_wins():
    """Successive halving (PRUNE_SCHEDULE): with three classes z_j = w_j . x, targeted runs on a
    near and a far competing class; the far run stops after its first checkpoint (fewer rows are
    evaluated than without pruning) and the closest violation is still the near class's exact
    boundary distance."""
    import saferisk.search.minimal_norm as minimal_norm

    n = 10
    layer = nn.Linear(n, 3, bias=True).double().eval()
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([1.0, 0.0, -5.0], dtype=torch.float64))
        layer.weight[1, 0] = 1.0   # class 1 overtakes class 0 at x_0 = 1
        layer.weight[2, 1] = 1.0   # class 2 at x_1 = 6: far behind
    model = Model(read_forward(module_to_onnx(layer.float(), (n,))).graph, name="three", dtype=torch.float64)
    x0 = torch.zeros(n, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, 0)
    region = Region(x0, 20.0, "2", torch.full((n,), -100.0, dtype=torch.float64), torch.full((n,), 100.0, dtype=torch.float64))
    evaluations = {}
    for schedule in ((), minimal_norm.PRUNE_SCHEDULE):
        evaluator = Evaluator(model, prop.value)
        tracker = ViolationTracker(prop, region)
        evaluator.observers.append(tracker)
        minimal_norm_attack(prop, region, evaluator, x0.unsqueeze(0).repeat(2, 1), torch.tensor([0, 1]), steps=100,
                            schedule=schedule)
        evaluations[schedule] = evaluator.evaluations
        assert tracker.best_x is not None and tracker.best_distance == pytest.approx(1.0, rel=1e-3)
    assert evaluations[minimal_norm.PRUNE_SCHEDULE] < evaluations[()] * 0.75, evaluations


def test_survivors_keep_the_closest_runs_the_budget_carries():
    """At a checkpoint: runs beyond ratio x the closest violation stop; of the rest at most the
    affordable number go on, the closest reaches first (a run with no violation yet is ranked
    by its ball radius); never fewer than one; before any violation, runs beyond ratio x the
    smallest ball radius stop."""
    from saferisk.search.minimal_norm import _survivors

    seen = torch.tensor([True, True, False, True, False])
    best = torch.tensor([1.0, 1.05, float("inf"), 2.0, float("inf")], dtype=torch.float64)
    eps = torch.tensor([0.9, 1.0, 1.02, 1.9, 5.0], dtype=torch.float64)
    assert _survivors(seen, best, eps, 1.1, None).tolist() == [True, True, True, False, False]
    assert _survivors(seen, best, eps, 1.1, 2).tolist() == [True, False, True, False, False]
    assert _survivors(seen, best, eps, 1.1, 0).tolist() == [True, False, False, False, False]
    nothing = torch.zeros(5, dtype=torch.bool)
    assert _survivors(nothing, torch.full((5,), float("inf")), eps, 1.2, None).tolist() == [True, True, True, False, False]
    assert _survivors(nothing, torch.full((5,), float("inf")), eps, 1.2, 2).tolist() == [True, True, False, False, False]
    assert _survivors(nothing, torch.full((5,), float("inf")), eps, float("inf"), None).all()


def test_survivors_halve_tied_runs_by_their_objective_before_any_violation():
    """Before any violation, ball radii that all tie within the ratio (at the cap: the linearised
    boundary lies beyond the ball) say nothing: the half of the runs closest to violating (smallest
    objective l; NaN last) go on. Not at a checkpoint of infinite ratio (no pruning by reach), nor
    once a violation was seen, nor without the objective."""
    from saferisk.search.minimal_norm import _survivors

    nothing = torch.zeros(5, dtype=torch.bool)
    never = torch.full((5,), float("inf"), dtype=torch.float64)
    at_cap = torch.full((5,), 0.3, dtype=torch.float64)
    loss = torch.tensor([0.5, float("nan"), 0.1, 2.0, 0.2], dtype=torch.float64)
    assert _survivors(nothing, never, at_cap, 1.3, None, loss).tolist() == [True, False, True, False, True]
    assert _survivors(nothing, never, at_cap, 1.3, 1, loss).tolist() == [False, False, True, False, False]
    assert _survivors(nothing, never, at_cap, float("inf"), None, loss).all()
    assert _survivors(nothing, never, at_cap, 1.3, None).all()
    spread = torch.tensor([0.1, 0.3, 0.3, 0.3, 0.3], dtype=torch.float64)  # no tie: the reach decides
    assert _survivors(nothing, never, spread, 1.3, None, loss).tolist() == [True, False, False, False, False]
    close = torch.tensor([0.10, 0.11, 0.12, 0.125, 0.1], dtype=torch.float64)  # within the ratio, not tied
    assert _survivors(nothing, never, close, 1.3, None, loss).all()
    minus_inf = torch.tensor([0.5, float("-inf"), 0.1, 2.0, 0.2], dtype=torch.float64)  # non-finite: last
    assert _survivors(nothing, never, at_cap, 1.3, None, minus_inf).tolist() == [True, False, True, False, True]
    seen = torch.tensor([False, False, False, True, False])
    best = torch.tensor([float("inf")] * 3 + [0.3, float("inf")], dtype=torch.float64)
    assert _survivors(seen, best, at_cap, 1.3, None, loss).all()


def test_runs_tied_at_the_cap_are_halved_by_their_objective():
    """Far from any boundary (the linearised boundary beyond a small ball), every run's ball radius
    sits at the cap and none sees a violation: the pruning halves the runs at each checkpoint by
    their objective instead of carrying them all to the last step."""
    model = _small_net(8, 4, seed=5)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    region = Region(x0, 1e-4, "2", torch.full((8,), -5.0, dtype=torch.float64), torch.full((8,), 5.0, dtype=torch.float64))
    evaluator = Evaluator(model, prop.value)
    rows = []
    evaluator.observers.append(lambda x, w: rows.append(x.shape[0]))
    minimal_norm_attack(prop, region, evaluator, x0.unsqueeze(0).repeat(8, 1), torch.tensor([-1, 0, 1, 2] * 2), 40,
                        schedule=((0.05, 1.3), (0.15, 1.1), (0.5, 1.05)))
    assert rows[0] == 8 and rows[-1] == 1, rows  # 8 -> 4 -> 2 -> 1


def _small_net(n: int, classes: int, seed: int, nan_below: float | None = None) -> Model:
    """A ReLU net n-16-classes (float64); with `nan_below`, outputs NaN wherever x_0 < nan_below
    (sqrt of x_0 - nan_below added to every output)."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(n, 16), nn.ReLU(), nn.Linear(16, classes))

        def forward(self, x):
            z = self.body(x)
            return z if nan_below is None else z + torch.sqrt(x[:, :1] - nan_below)

    module = Net().eval()
    return Model(read_forward(module_to_onnx(module, (n,))).graph, name="small", dtype=torch.float64)


def _evaluated_points(model: Model, norm: str, x0: torch.Tensor, steps: int = 60) -> list[torch.Tensor]:
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(torch.nan_to_num(z0, nan=-1e9).argmax()))
    n = x0.numel()
    region = Region(x0, 3.0, norm, torch.full((n,), -5.0, dtype=torch.float64), torch.full((n,), 5.0, dtype=torch.float64))
    evaluator = Evaluator(model, prop.value)
    points = []
    evaluator.observers.append(lambda x, w: points.append(x.clone()))
    starts = torch.cat([x0.unsqueeze(0).repeat(4, 1), x0 + 0.05 * torch.randn(4, n, generator=torch.Generator().manual_seed(0),
                                                                             dtype=torch.float64)])
    minimal_norm_attack(prop, region, evaluator, starts, torch.tensor([-1, 0, 1, 2] * 2), steps,
                        kinds=torch.tensor([STEEPEST, PROPORTIONAL] * 4) if norm == "inf" else None)
    return points


@pytest.mark.parametrize("norm", ("inf", "2"))
def test_the_all_seen_shortcut_gives_the_same_runs(monkeypatch, norm):
    """Once every run has seen a violation, the FMN loop skips the linearised boundary: its ball
    radii must be exactly those of the general update (the points evaluated, bit for bit)."""
    import saferisk.search.minimal_norm as minimal_norm

    model = _small_net(8, 4, seed=5)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    seen_all = []
    original = minimal_norm._every_run_seen
    monkeypatch.setattr(minimal_norm, "_every_run_seen", lambda seen: seen_all.append(original(seen)) or seen_all[-1])
    shortcut = _evaluated_points(model, norm, x0)
    assert any(seen_all), "every run saw a violation at some step (else the shortcut is not exercised)"
    monkeypatch.setattr(minimal_norm, "_every_run_seen", lambda seen: False)
    general = _evaluated_points(model, norm, x0)
    assert len(shortcut) == len(general)
    assert all(torch.equal(a, b) for a, b in zip(shortcut, general))


def test_mixed_step_kinds_give_each_row_its_own_direction():
    """L-inf runs with sign steps beside gradient-proportional ones and the paper's steps in units
    of the radius (the selects on every row) move each row exactly as a batch of that kind alone
    does (no pruning: rows are independent)."""
    model = _small_net(8, 4, seed=5)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    region = Region(x0, 3.0, "inf", torch.full((8,), -5.0, dtype=torch.float64), torch.full((8,), 5.0, dtype=torch.float64))
    starts = x0 + 0.05 * torch.randn(6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    targets = torch.tensor([-1, 0, 1] * 2)

    def last_points(kinds):
        evaluator = Evaluator(model, prop.value)
        points = []
        evaluator.observers.append(lambda x, w: points.append(x.clone()))
        minimal_norm_attack(prop, region, evaluator, starts, targets, 30, kinds=kinds, schedule=())
        return points[-1]

    mixed = torch.tensor([STEEPEST, PROPORTIONAL, RADIUS, PROPORTIONAL, RADIUS, STEEPEST])
    runs = {kind: last_points(torch.full((6,), kind)) for kind in (STEEPEST, PROPORTIONAL, RADIUS)}
    both = last_points(mixed)
    for kind, alone in runs.items():
        assert torch.equal(both[mixed == kind], alone[mixed == kind])
    assert not torch.equal(runs[STEEPEST], runs[PROPORTIONAL])  # the kinds do step differently
    assert not torch.equal(runs[STEEPEST], runs[RADIUS]) and not torch.equal(runs[PROPORTIONAL], runs[RADIUS])


def test_rows_with_non_finite_outputs_do_not_stop_the_others():
    """Rows whose outputs are NaN (x_0 below 0.3 here) get no gradient and never count as
    violations; the other rows still reach a violation, and every violation kept is finite."""
    model = _small_net(8, 4, seed=6, nan_below=0.3)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    region = Region(x0, 3.0, "inf", torch.full((8,), -5.0, dtype=torch.float64), torch.full((8,), 5.0, dtype=torch.float64))
    evaluator = Evaluator(model, prop.value)
    tracker = ViolationTracker(prop, region)
    values = []
    evaluator.observers += [tracker, lambda x, w: values.append(w.clone())]
    starts = x0.unsqueeze(0).repeat(6, 1)
    starts[:3, 0] = 0.1  # NaN outputs there
    minimal_norm_attack(prop, region, evaluator, starts, torch.tensor([-1, 0, 1, -1, 0, 1]), 80)
    assert bool(torch.isnan(values[0]).any()) and not bool(torch.isnan(values[0]).all())
    assert tracker.best_x is not None
    assert bool(torch.isfinite(model.forward_flat(tracker.best_x.unsqueeze(0))).all())
    assert float(prop.value(model.forward_flat(tracker.best_x.unsqueeze(0)))[0]) <= prop.threshold


class _OwnDistances(ViolationTracker):
    takes_distance = False  # (computes the distances of the violating rows itself)


@pytest.mark.parametrize("norm", NORMS)
def test_tracker_with_the_search_distances_keeps_the_same_violation(norm):
    """The FMN loop hands the tracker its rows' distances: the closest violation kept is the one a
    tracker computing them itself keeps, point for point (NaN rows, as above, never count)."""
    model = _small_net(8, 4, seed=6, nan_below=0.3)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    region = Region(x0, 3.0, norm, torch.full((8,), -5.0, dtype=torch.float64), torch.full((8,), 5.0, dtype=torch.float64))
    kept = []
    for tracker_type in (ViolationTracker, _OwnDistances):
        evaluator = Evaluator(model, prop.value)
        tracker, seen = tracker_type(prop, region), []
        evaluator.observers += [tracker, lambda x, w, seen=seen, tracker=tracker: seen.append(tracker.best_distance)]
        starts = x0.unsqueeze(0).repeat(6, 1)
        starts[:3, 0] = 0.1  # NaN outputs there
        minimal_norm_attack(prop, region, evaluator, starts, torch.tensor([-1, 0, 1, -1, 0, 1]), 60)
        kept.append((tracker.best_x, seen))
    (x_given, history_given), (x_own, history_own) = kept
    assert x_given is not None and torch.equal(x_given, x_own)
    assert history_given == history_own and len(set(history_given)) > 2  # (improved along the way, alike)
    direct = ViolationTracker(prop, region)
    x = torch.stack([x0 + 0.1, x0 - 0.2, x0 + 0.3])
    w = torch.tensor([float("nan"), prop.threshold - 1.0, prop.threshold + 1.0], dtype=torch.float64)
    direct(x, w, region.distance(x))  # NaN (row 0) and a holding row (row 2) are not violations
    assert torch.equal(direct.best_x, x[1]) and direct.best_distance == float(region.distance(x[1:2])[0])


def _through_the_terms(model: Model, prop, x: torch.Tensor, targets: torch.Tensor | None):
    """(each row's term, autograd's gradient of it) from one batched forward, differentiating
    through the spec's terms (targets -1: the smallest; no exact spec: w - c)."""
    point = x.clone().requires_grad_(True)
    z = model.forward_flat_grad(point)
    spec = prop.spec()
    if spec is None or not spec.exact:
        terms = prop.value(z) - prop.threshold
    else:
        groups = spec.groups(z)
        terms = torch.where(targets >= 0, groups.gather(1, targets.clamp_min(0).view(-1, 1)).squeeze(1), groups.amin(1))
    finite = torch.isfinite(terms)
    (grad,) = torch.autograd.grad(terms[finite].sum(), point)
    return terms.detach(), grad


@pytest.mark.parametrize("kind", ("margins", "pieces", "no spec"))
def test_term_gradients_equal_the_gradient_through_the_terms(kind):
    """`term_gradients` (FMN, FAB and the projection): each row's term (at -1 the smallest, w - c)
    and its gradient in x, seeded with the active piece's coefficients, equal bit for bit the term
    computed through the spec and autograd's gradient of it (the margins, one piece per term; terms of
    two pieces and of one, the other masked; a property without a spec: w - c); a row with non-finite outputs
    gets no gradient (zero, or NaN where the model's backward multiplies 0 by NaN: callers take
    nan_to_num). Fails when the seeding is wrong, e.g. the coefficients of another row or piece."""
    from saferisk.properties.base import BoundProperty
    from saferisk.search.gradient import term_gradients

    model = _small_net(8, 4, seed=6, nan_below=0.3)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    if kind == "no spec":
        class Product(BoundProperty):  # w = z_0 z_1 (no MinMaxSpec)
            threshold = 0.05

            def value(self, z):
                return z[:, 0] * z[:, 1]
        prop = Product()
    elif kind == "margins":
        prop = Robustness().bind(z0)
    else:  # terms of two and one pieces (the second's other piece masked)
        from saferisk.properties.base import MinMaxSpec, SpecBoundProperty

        coefficients = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64).tolist()
        prop = SpecBoundProperty(MinMaxSpec.from_rows([[(coefficients[0], 0.1), (coefficients[1], -0.2)],
                                                       [(coefficients[2], 0.05)]], 4))
    spec = prop.spec()
    x = x0 + 0.1 * torch.randn(5, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x[:, 0] = 0.5
    x[4, 0] = 0.1  # NaN outputs on this row only
    J = 1 if spec is None else int(spec.A.shape[0])
    targets = None if spec is None else torch.tensor([-1, 0, J - 1, -1, 0])
    if kind == "pieces":
        assert spec.A.shape[1] > 1 and not bool(spec.mask.all())  # (several pieces per term, some masked)
    values, grad, finite = term_gradients(prop, spec, Evaluator(model, prop.value), x, targets)
    expected_values, expected_grad = _through_the_terms(model, prop, x, targets)
    assert finite is not None and finite.tolist() == [True] * 4 + [False]
    assert torch.equal(values[:4], expected_values[:4])
    assert torch.equal(grad[:4], expected_grad[:4])
    assert torch.equal(torch.nan_to_num(grad[4]), torch.zeros(8, dtype=torch.float64))
    assert bool((grad[:4].abs().sum(1) > 0).all())
    if spec is not None:
        assert not torch.equal(grad[1], grad[2])  # (different terms: different gradients)


def test_survivors_compare_runs_apart_among_themselves():
    """Runs marked `apart` (the paper's-step runs; or a group id per run) are pruned against the
    closest violation of their own group, the others against theirs: a run of one group far behind the other group's
    best still goes on when it leads its own; the budget's cut then takes the closest reaches of
    the union."""
    from saferisk.search.minimal_norm import _survivors

    seen = torch.tensor([True, True, True, True, True])
    best = torch.tensor([1.0, 1.05, 1.5, 3.0, 3.1], dtype=torch.float64)
    eps = best.clone()
    apart = torch.tensor([False, False, False, True, True])
    assert _survivors(seen, best, eps, 1.1, None).tolist() == [True, True, False, False, False]
    assert _survivors(seen, best, eps, 1.1, None, apart=apart).tolist() == [True, True, False, True, True]
    assert _survivors(seen, best, eps, 1.1, 3, apart=apart).tolist() == [True, True, False, True, False]
    assert _survivors(seen, best, eps, 1.1, None, apart=torch.zeros(5, dtype=torch.bool)).tolist() == \
        [True, True, False, False, False]
    groups = torch.tensor([0, 0, 2, 1, 1])  # (three groups: e.g. runs from x0, RADIUS runs, runs from FAB's point)
    assert _survivors(seen, best, eps, 1.1, None, apart=groups).tolist() == [True, True, True, True, True]
    assert _survivors(seen, best, eps, 1.1, 2, apart=groups).tolist() == [True, True, False, False, False]


def test_few_objectives_get_as_many_runs_as_ten():
    """`runs_per_target`: a model with few classes (or a property without a spec: w - c alone)
    starts as many FMN runs as a 10-class model (restarts x 10), never fewer than `restarts` per
    objective."""
    from saferisk.search.witness import runs_per_target

    assert runs_per_target(2, 10) == 2 and runs_per_target(5, 10) == 5
    assert runs_per_target(2, 3) == 7 and runs_per_target(2, 1) == 20 and runs_per_target(1, 2) == 5
    assert runs_per_target(2, 10, max_targets=2) == 2 and runs_per_target(0, 3) == 4


def _conv1d_pool_net():
    """The Conv1d / max-pool / average-pool net of tests/real_networks.py (seed 2, 3 classes) as
    saferisk's graph and its float32 module, with three inputs whose L-inf boundary is 0.35-0.57
    away in [0, 1]^24: a ball of a third of the box or more."""
    from tests.real_networks import build

    module, shape, _, _ = build("conv1d-pool", 2)
    model = Model(read_forward(module_to_onnx(module, shape)).graph, name="conv1d-pool")
    inputs = np.random.default_rng(201).random((3, int(np.prod(shape))))
    return model, module, shape, inputs


def test_radius_runs_reach_the_boundary_where_whole_ball_steps_hop_between_vertices():
    """Where the L-inf ball is a large part of the box, FMN steps relative to the ball hop between
    its vertices without a violation (0.51-0.59 here); the runs with the paper's steps in units of
    the radius reach the boundary: every witness at most 1% beyond foolbox's FMN (the paper's
    implementation, 100 steps) on the gradient path, and on the black-box path (its w - c run
    taking those steps) within 5% of the gradient path or 1% of FMN."""
    fb = pytest.importorskip("foolbox")  # (the bench extra, which `make test` installs)
    import warnings

    from saferisk.models.ort import OnnxRuntimeForward

    model, module, shape, inputs = _conv1d_pool_net()
    black_box = Model(None, name="conv1d-pool", runtime=OnnxRuntimeForward(module_to_onnx(module, shape)),
                      graph_error="black-box run")
    domain = Domain.scalar(0.0, 1.0, inputs.shape[1])
    fmn = fb.attacks.LInfFMNAttack(steps=100)
    for x0 in inputs:
        z0 = model.forward_flat(torch.as_tensor(x0, dtype=model.dtype).unsqueeze(0))[0]
        decision = int(z0.argmax())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = torch.as_tensor(x0, dtype=torch.float32).reshape(1, *shape)
            point, _, success = fmn(fb.PyTorchModel(module.eval(), bounds=(0.0, 1.0)), images,
                                    torch.tensor([decision]), epsilons=None)
        assert bool(success[0])
        reference = float((point.reshape(-1).double() - torch.as_tensor(x0)).abs().max())
        found = {}
        for path, runner in (("gradient", model), ("black-box", black_box)):
            witness = find_witness(runner, Robustness().bind(z0, decision), x0, 1.0, "inf", domain, seed=0)
            assert witness is not None
            found[path] = witness.distance
        assert found["gradient"] <= reference * 1.01, (found, reference)
        assert found["black-box"] <= max(found["gradient"] * 1.05, reference * 1.01), (found, reference)


@pytest.mark.parametrize("norm", ("inf", "2"))
def test_a_three_class_model_starts_as_many_runs_as_a_ten_class_one(monkeypatch, norm):
    """The Conv1d net has 3 classes (w - c and 2 targets): with the model's gradients 7 restarts
    per objective (2 x 10 runs), for L-inf each with sign and proportional steps, plus
    attack_restarts runs with the paper's steps on w - c from x0 and the first restart; on finite
    differences 4 per objective (10 runs), the run on w - c from x0 with the paper's steps (L-inf)."""
    import saferisk.search.witness as witness_module
    from saferisk.models.ort import OnnxRuntimeForward

    model, module, shape, inputs = _conv1d_pool_net()
    black_box = Model(None, name="conv1d-pool", runtime=OnnxRuntimeForward(module_to_onnx(module, shape)),
                      graph_error="black-box run")
    calls = []
    original = witness_module.minimal_norm_attack
    monkeypatch.setattr(witness_module, "minimal_norm_attack", lambda *args, **kwargs: calls.append(
        (args[3].clone(), args[4].clone(), kwargs["kinds"].clone())) or original(*args, **kwargs))
    z0 = model.forward_flat(torch.as_tensor(inputs[0], dtype=model.dtype).unsqueeze(0))[0]
    domain = Domain.scalar(0.0, 1.0, inputs.shape[1])
    for runner in (model, black_box):
        find_witness(runner, Robustness().bind(z0, int(z0.argmax())), inputs[0], 0.5 if norm == "inf" else 3.0, norm,
                     domain, seed=0)
    (starts, targets, kinds), (bb_starts, bb_targets, bb_kinds) = calls
    x0 = torch.as_tensor(inputs[0], dtype=model.dtype)
    kinds_per_run = 2 if norm == "inf" else 1
    radius_runs = 2 if norm == "inf" else 0
    assert starts.shape[0] == 3 * 7 * kinds_per_run + radius_runs
    assert sorted(targets.tolist()).count(-1) == 7 * kinds_per_run + radius_runs
    assert int((kinds == RADIUS).sum()) == radius_runs and bool((targets[kinds == RADIUS] == -1).all())
    if norm == "inf":  # from x0 and the first restart's point, as the sign runs on w - c from there
        assert torch.equal(starts[kinds == RADIUS][0], x0) and not torch.equal(starts[kinds == RADIUS][1], x0)
        assert int((kinds == PROPORTIONAL).sum()) == 21
    assert bb_starts.shape[0] == 3 * 4 and bb_targets.tolist().count(-1) == 4
    assert bb_kinds.tolist() == ([RADIUS] + [PROPORTIONAL] * 11 if norm == "inf" else [STEEPEST] * 12)
    assert torch.equal(bb_starts[0], x0)


def test_radius_steps_follow_the_regions_scaling():
    """The same ball written in input units (unit 1, radius R) and in units of a per-feature width
    (unit u, radius R / u where u is uniform): the paper's steps move the same points, as the other
    kinds do (they are measured in the region's scaled norm)."""
    model = _small_net(8, 4, seed=5)
    x0 = torch.full((8,), 0.5, dtype=torch.float64)
    z0 = model.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    lower, upper = torch.full((8,), -5.0, dtype=torch.float64), torch.full((8,), 5.0, dtype=torch.float64)
    points = {}
    for name, region in (("input", Region(x0, 1.0, "inf", lower, upper)),
                         ("scaled", Region(x0, 0.25, "inf", lower, upper, torch.full((8,), 4.0, dtype=torch.float64)))):
        for kind in (STEEPEST, RADIUS):
            evaluator = Evaluator(model, prop.value)
            seen = []
            evaluator.observers.append(lambda x, w: seen.append(x.clone()))
            minimal_norm_attack(prop, region, evaluator, x0.unsqueeze(0).repeat(2, 1), torch.tensor([-1, 0]), 20,
                                kinds=torch.full((2,), kind), schedule=())
            points[name, kind] = torch.stack(seen)
    for kind in (STEEPEST, RADIUS):
        assert torch.allclose(points["input", kind], points["scaled", kind], rtol=0, atol=1e-9)
    assert not torch.allclose(points["input", STEEPEST], points["input", RADIUS])


@pytest.mark.parametrize("name, seed, index", [("bilstm-2layer", 4, 2), ("mobilenet", 5, 0)])
def test_classifiers_open_with_fab(monkeypatch, name, seed, index):
    """Nets of tests/real_networks.py at seeds the witness benchmark does not hold (weights and
    inputs drawn as its architectures table draws them), L2: a 2-layer bi-LSTM of 3 classes and a
    MobileNet block of 10. The FMN runs from x0 alone end in a basin 11-15% beyond torchattacks' FAB
    (AutoAttack's code, 100 steps x 5 restarts); FAB from x0 before them (`FAB_SHARE` of the steps),
    with FMN runs from its closest violation, brings the witness to at most FAB's radius (+1%).
    Without it (the share at 0) the witness stays beyond: the test can fail."""
    torchattacks = pytest.importorskip("torchattacks")  # (the bench extra, which `make test` installs)
    import contextlib
    import io
    import warnings

    import saferisk.search.witness as witness_module
    from tests.real_networks import ARCHITECTURES, build

    torch.manual_seed(1000 * seed + list(ARCHITECTURES).index(name))  # (as benchmarks/bench_witness.py zoo_cases)
    module, shape, _, _ = build(name, seed)
    module.eval()
    model = Model(read_forward(module_to_onnx(module, shape)).graph, name=name)
    x0 = np.random.default_rng(1 + 100 * seed).random((3, int(np.prod(shape))))[index]
    z0 = model.forward_flat(torch.as_tensor(x0, dtype=model.dtype).unsqueeze(0))[0]
    decision = int(z0.argmax())
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fab = torchattacks.FAB(module, norm="L2", eps=10.0, steps=100, n_restarts=5, n_classes=int(z0.numel()), seed=0)
        point = fab(torch.as_tensor(x0, dtype=torch.float32).reshape(1, *shape), torch.tensor([decision]))
    with torch.no_grad():
        assert int(module(point).argmax()) != decision
    reference = float(torch.linalg.vector_norm(point.reshape(-1).double() - torch.as_tensor(x0)))
    domain = Domain.scalar(0.0, 1.0, x0.size)
    prop = Robustness().bind(z0, decision)
    found = {}
    for share in (witness_module.FAB_SHARE, 0.0):
        monkeypatch.setattr(witness_module, "FAB_SHARE", share)
        witness = find_witness(model, prop, x0, 10.0, "2", domain, seed=0)
        assert witness is not None
        found[share] = witness.distance
    with_fab, without = found.values()
    assert with_fab <= reference * 1.01, (found, reference)
    assert without > reference * 1.05, (found, reference)  # (the FMN runs alone: the farther basin)


def test_tighten_runs_where_it_can_still_win(monkeypatch):
    """After the minimal-norm runs on the model's own gradients, `tighten` is left out on inputs of
    more than ESCAPE_DIMENSION features (it won nothing there); it runs on finite-difference
    gradients, on small inputs, and where no minimal-norm attack ran (attack_steps 0)."""
    import saferisk.search.witness as witness_module
    from saferisk.models.ort import OnnxRuntimeForward

    calls = []
    original = witness_module.tighten
    monkeypatch.setattr(witness_module, "tighten", lambda *args, **kwargs: calls.append(args[2].gradient_estimate)
                        or original(*args, **kwargs))
    for n in (24, 8):
        torch.manual_seed(2)
        onnx_bytes = module_to_onnx(nn.Sequential(nn.Linear(n, 16), nn.ReLU(), nn.Linear(16, 4)).eval(), (n,))
        model = Model(read_forward(onnx_bytes).graph, name="small", dtype=torch.float64)
        black_box = Model(None, name="small", runtime=OnnxRuntimeForward(onnx_bytes), graph_error="black-box run")
        x0 = torch.full((n,), 0.5, dtype=torch.float64)
        z0 = model.forward_flat(x0.unsqueeze(0))[0]
        prop, domain = Robustness().bind(z0, int(z0.argmax())), Domain.scalar(0.0, 1.0, n)
        ran = {}
        for name, runner, config in (("gradient", model, None), ("black-box", black_box, None),
                                     ("no attack", model, SearchConfig(attack_steps=0))):
            calls.clear()
            assert find_witness(runner, prop, x0, 2.0, "2", domain, config=config, seed=0) is not None
            ran[name] = len(calls) > 0
        assert ran == {"gradient": n <= witness_module.ESCAPE_DIMENSION, "black-box": True, "no attack": True}, (n, ran)
