"""Finite-difference gradients for models without them (onnxruntime only): the estimates, their
cost in the evaluation count, and black-box witnesses as tight as the gradient path's."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from saferisk.data.domain import Domain
from saferisk.models.load import module_to_onnx, read_forward
from saferisk.models.model import Model
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search import SearchConfig
from saferisk.search import finite_difference
from saferisk.search.finite_difference import (ANCHOR_COUNT, COORDINATE_LIMIT, DIRECTIONS, MIN_ANCHORS,
                                               FiniteDifferences, has_gradients)
from saferisk.search.region import Evaluator, Region

pytest.importorskip("onnxruntime")
from saferisk.models.ort import OnnxRuntimeForward  # noqa: E402

N_INPUTS = 32


class CountingRuntime(OnnxRuntimeForward):
    """onnxruntime forward passes that count the rows they run."""

    rows = 0

    def __call__(self, x):
        self.rows += int(x.shape[0])
        return super().__call__(x)


def _mlp(n: int = N_INPUTS) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.0)
    return net


def _models(n: int = N_INPUTS) -> tuple[Model, Model]:
    """(the MLP through saferisk's graph: gradients; the same ONNX file through onnxruntime only)."""
    onnx = module_to_onnx(_mlp(n), (n,))
    with_gradients = Model(read_forward(onnx).graph, name="graph", onnx_bytes=onnx)
    black_box = Model(None, runtime=CountingRuntime(onnx), name="black-box")
    assert has_gradients(with_gradients) and not has_gradients(black_box)
    return with_gradients, black_box


COTANGENT = torch.tensor([1.0, -2.0, 0.5, 0.0])  # the output cotangent g of the estimates g^T J


def _jacobian_estimate(model: Model, x: torch.Tensor, n: int, budget: int | None = None,
                       estimator: FiniteDifferences | None = None) -> tuple[torch.Tensor, torch.Tensor, Evaluator]:
    """(the estimated g^T J at the rows x, the exact one from the torch MLP in float64, the evaluator that counted)."""
    region = Region(torch.zeros(n), 1.0, "inf", -torch.ones(n), torch.ones(n))
    evaluator = Evaluator(model, lambda z: z[:, 0], budget=budget)
    estimator = estimator or FiniteDifferences(evaluator, region)
    cotangent = COTANGENT
    x = x.clone().requires_grad_(True)
    (estimate,) = torch.autograd.grad((estimator.outputs(x) * cotangent).sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    (reference,) = torch.autograd.grad((_mlp(n).double()(x64) * cotangent.double()).sum(), x64)
    return estimate, reference.float(), evaluator


def test_coordinate_estimates_match_the_gradient_and_every_row_is_counted():
    _, black_box = _models()
    # three rows, two of them equal (the targeted runs of one start share one estimate), one on the box face
    x = torch.rand(3, N_INPUTS, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    x[1] = x[0]
    x[2, :5] = 1.0  # one-sided differences there
    estimate, reference, evaluator = _jacobian_estimate(black_box, x, N_INPUTS)
    assert N_INPUTS <= COORDINATE_LIMIT
    cos = torch.nn.functional.cosine_similarity(estimate, reference, dim=1)
    assert bool((cos > 0.999).all()), cos
    assert torch.allclose(estimate, reference, rtol=1e-2, atol=1e-2 * float(reference.abs().max()))
    # two distinct rows, n difference rows each (the outputs themselves are counted by Evaluator.outputs_with_grad)
    assert evaluator.evaluations == 2 * (N_INPUTS + 1)


def test_random_direction_estimates_point_along_the_gradient_in_many_dimensions():
    n = 2 * COORDINATE_LIMIT
    _, black_box = _models(n)
    x = torch.rand(4, n, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9
    # a budget too small for MIN_ANCHORS anchored Jacobians: random directions
    estimate, reference, evaluator = _jacobian_estimate(black_box, x, n, budget=MIN_ANCHORS * (n + 1) - 1)
    cos = torch.nn.functional.cosine_similarity(estimate, reference, dim=1)
    # a random DIRECTIONS-dimensional subspace keeps sqrt(DIRECTIONS / n) of the gradient's direction
    assert bool((cos > 0.5 * (DIRECTIONS / n) ** 0.5).all()), cos
    assert evaluator.evaluations == 2 * DIRECTIONS * 4


def test_anchored_jacobians_beyond_the_coordinate_limit_are_reused_where_they_predict_the_outputs():
    """Image-size inputs: a coordinate-wise Jacobian (n + 1 rows) at an anchor, reused at points
    whose outputs it predicts; a point it does not predict becomes an anchor of its own."""
    n = 2 * COORDINATE_LIMIT
    _, black_box = _models(n)
    region = Region(torch.zeros(n), 1.0, "inf", -torch.ones(n), torch.ones(n))
    evaluator = Evaluator(black_box, lambda z: z[:, 0], budget=10 ** 6)
    estimator = FiniteDifferences(evaluator, region)
    assert estimator.anchored
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(2, n, generator=generator) * 1.8 - 0.9
    estimate, reference, _ = _jacobian_estimate(black_box, x, n, estimator=estimator)
    assert evaluator.evaluations == 2 * (n + 1) and len(estimator.anchors) == 2
    cos = torch.nn.functional.cosine_similarity(estimate, reference, dim=1)
    assert bool((cos > 0.95).all()), cos
    # a small move from the first anchor: its Jacobian, no new rows
    near = x[:1] + 1e-4 * torch.randn(1, n, generator=generator)
    again, reference_near, _ = _jacobian_estimate(black_box, near, n, estimator=estimator)
    assert evaluator.evaluations == 2 * (n + 1) and len(estimator.anchors) == 2
    assert float(torch.nn.functional.cosine_similarity(again, reference_near, dim=1)) > 0.95
    # far from both (another linear piece, outputs the anchors mispredict): a new anchor
    far = -x[:1]
    _jacobian_estimate(black_box, far, n, estimator=estimator)
    assert evaluator.evaluations == 3 * (n + 1) and len(estimator.anchors) == 3
    # at most ANCHOR_COUNT kept
    _jacobian_estimate(black_box, torch.rand(ANCHOR_COUNT, n, generator=generator) * 1.8 - 0.9, n, estimator=estimator)
    assert len(estimator.anchors) == ANCHOR_COUNT


def test_anchors_beyond_the_budget_left_give_way_to_the_closest_kept_one():
    """Where the budget left does not carry a fresh anchor (n + 1 rows), a point no anchor
    predicts takes the closest anchor's Jacobian: no rows, the budget kept."""
    n = 2 * COORDINATE_LIMIT
    _, black_box = _models(n)
    region = Region(torch.zeros(n), 1.0, "inf", -torch.ones(n), torch.ones(n))
    evaluator = Evaluator(black_box, lambda z: z[:, 0], budget=2 * (n + 1) + n // 2)
    estimator = FiniteDifferences(evaluator, region)
    assert estimator.anchored
    x = torch.rand(2, n, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9
    _jacobian_estimate(black_box, x, n, estimator=estimator)
    assert evaluator.evaluations == 2 * (n + 1) and len(estimator.anchors) == 2
    generator = torch.Generator().manual_seed(3)
    far = (x[1:] + 0.5 * torch.randn(1, n, generator=generator).sign()).clamp(-1, 1)  # closer to the second anchor
    assert estimator._anchor_for(far[0], black_box.forward_flat(far)[0].float()) is None  # (a fresh one above)
    distances = [float(torch.linalg.vector_norm(far[0] - anchor[0])) for anchor in estimator.anchors]
    assert distances[1] < distances[0]
    estimate, _, _ = _jacobian_estimate(black_box, far, n, estimator=estimator)
    assert evaluator.evaluations == 2 * (n + 1) and len(estimator.anchors) == 2
    by_anchor = [COTANGENT @ jacobian.T for _, _, jacobian in estimator.anchors]
    scale = float(by_anchor[1].abs().max())
    assert torch.allclose(estimate[0], by_anchor[1], rtol=1e-5, atol=1e-6 * scale)  # the second anchor's Jacobian
    assert not torch.allclose(estimate[0], by_anchor[0], rtol=1e-2, atol=1e-2 * scale)


def test_without_an_anchor_a_budget_too_small_for_one_gets_random_directions():
    """The budget left (after the Lipschitz search, say) does not carry a first anchor: random
    directions, whose 2 x DIRECTIONS rows it does carry, instead of n + 1 rows past the budget."""
    n = 2 * COORDINATE_LIMIT
    _, black_box = _models(n)
    region = Region(torch.zeros(n), 1.0, "inf", -torch.ones(n), torch.ones(n))
    evaluator = Evaluator(black_box, lambda z: z[:, 0], budget=n + 1)
    estimator = FiniteDifferences(evaluator, region)
    assert estimator.anchored  # the whole budget carries one
    evaluator.count(n // 2)
    x = torch.rand(1, n, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9
    estimate, reference, _ = _jacobian_estimate(black_box, x, n, estimator=estimator)
    assert not estimator.anchors and evaluator.evaluations == n // 2 + 2 * DIRECTIONS
    assert float(torch.nn.functional.cosine_similarity(estimate, reference, dim=1)) > 0.5 * (DIRECTIONS / n) ** 0.5


def _image_cnn() -> tuple[Model, Model, int]:
    """(a 3 x 24 x 24 CNN through saferisk's graph, the same ONNX file through onnxruntime only, n)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    shape = (3, 24, 24)
    n = 3 * 24 * 24
    assert n > COORDINATE_LIMIT
    onnx = module_to_onnx(net, shape)
    with_gradients = Model(read_forward(onnx).graph, name="graph", onnx_bytes=onnx)
    return with_gradients, Model(None, runtime=OnnxRuntimeForward(onnx), name="black-box"), n


def test_a_small_black_box_budget_still_gets_anchored_estimates_and_its_witness_search():
    """A black_box_budget of 4 anchors' rows (below the Lipschitz search's share of `budget`):
    the Lipschitz search takes its share of the smaller budget, the estimates are anchored, and
    the black-box witnesses stay close to the gradient path's, inside the budget. With anchors
    only where ANCHOR_COUNT of them fit (as before), random directions: 4.5-6.6x (53x with the
    Lipschitz search's share of `budget`, as before, too)."""
    with_gradients, black_box, n = _image_cnn()
    domain = Domain.scalar(0.0, 1.0, n)
    search = SearchConfig(black_box_budget=4 * (n + 1))
    assert search.black_box_budget < 0.3 * search.budget
    X = torch.rand(2, n, generator=torch.Generator().manual_seed(4))

    def ratios(within_budget: bool = True) -> list[float]:
        out = []
        for norm, max_radius in (("inf", 0.5), ("2", 10.0)):
            for i in range(X.shape[0]):
                runs = [compute_radius(model, X[i].double().numpy(), Robustness(), norm, max_radius, domain,
                                       certify=False, input_id=str(i), search=search)
                        for model in (with_gradients, black_box)]
                assert runs[0].radius_upper is not None and runs[1].radius_upper is not None, (norm, i)
                if within_budget:  # (the budget is checked between steps: the last may pass it by its differences)
                    assert runs[1].evaluations <= search.black_box_budget + 2 * DIRECTIONS, (norm, i)
                out.append(runs[1].radius_upper / runs[0].radius_upper)
        return out

    # (within 10% at this small budget: over input seeds 4-11 the worst ratio was 1.056, with
    # random directions 4.5x and more)
    assert max(ratios()) <= 1.10
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finite_difference, "MIN_ANCHORS", ANCHOR_COUNT)
        assert min(ratios(within_budget=False)) > 1.5


def test_black_box_witnesses_of_an_image_size_cnn_are_within_5_percent_of_the_gradient_path():
    """3 x 24 x 24 inputs (beyond the coordinate limit): the anchored estimates."""
    with_gradients, black_box, n = _image_cnn()
    domain = Domain.scalar(0.0, 1.0, n)
    X = torch.rand(2, n, generator=torch.Generator().manual_seed(4))
    for i in range(X.shape[0]):
        radii = {}
        for key, model in (("gradient", with_gradients), ("black-box", black_box)):
            result = compute_radius(model, X[i].double().numpy(), Robustness(), "inf", 0.5, domain, certify=False,
                                    input_id=str(i))
            radii[key] = result.radius_upper
        assert radii["gradient"] is not None and radii["black-box"] is not None, radii
        assert radii["black-box"] <= 1.05 * radii["gradient"], radii


def test_black_box_witnesses_are_within_5_percent_of_the_gradient_path_and_counted():
    with_gradients, black_box = _models()
    domain = Domain.scalar(-1.0, 1.0, N_INPUTS)
    X = torch.rand(10, N_INPUTS, generator=torch.Generator().manual_seed(5)) * 2 - 1
    search = SearchConfig(budget=10_000, black_box_budget=20_000)
    for norm, max_radius in (("inf", 1.0), ("2", 3.0)):
        ratios = []
        for i in range(X.shape[0]):
            runs = {}
            for key, model in (("gradient", with_gradients), ("black-box", black_box)):
                before = black_box.runtime.rows
                runs[key] = compute_radius(model, X[i].double().numpy(), Robustness(), norm, max_radius, domain,
                                           certify=False, input_id=str(i), search=search)
                if key == "black-box":  # every row onnxruntime ran is counted, but the few single-row re-checks
                    ran = black_box.runtime.rows - before
                    # the budget is checked between steps: the last one may pass it by its own differences
                    assert runs[key].evaluations <= search.budget_for(black_box) + 16 * 2 * N_INPUTS
                    assert runs[key].evaluations <= ran <= runs[key].evaluations + 100
            assert runs["gradient"].radius_upper is not None, (norm, i)
            assert runs["black-box"].radius_upper is not None, (norm, i)
            ratios.append(runs["black-box"].radius_upper / runs["gradient"].radius_upper)
        assert statistics.median(ratios) <= 1.05, (norm, ratios)
        assert max(ratios) <= 1.25, (norm, ratios)


def test_finite_differences_off_keeps_the_black_box_search_and_results_are_deterministic():
    _, black_box = _models()
    domain = Domain.scalar(-1.0, 1.0, N_INPUTS)
    x0 = (torch.rand(N_INPUTS, generator=torch.Generator().manual_seed(5)) * 2 - 1).double().numpy()
    run = lambda **kw: compute_radius(black_box, x0, Robustness(), "inf", 1.0, domain, certify=False,
                                      search=SearchConfig(budget=4000, **kw))
    first, again, off = run(), run(), run(finite_differences=False)
    assert (first.radius_upper, first.evaluations) == (again.radius_upper, again.evaluations)
    assert off.radius_upper is not None and off.radius_upper != first.radius_upper


def test_fab_on_finite_differences_matches_fab_on_the_model_gradients():
    """FAB needs one Jacobian of all terms per step: coordinate-wise one-sided differences give it
    exactly inside a linear piece of the ReLU MLP, so the black-box run lands where the gradient
    run does (every difference row counted)."""
    from saferisk.search.minimal_norm import fab_attack
    from saferisk.search.witness import ViolationTracker

    with_gradients, black_box = _models()
    x0 = torch.rand(N_INPUTS, generator=torch.Generator().manual_seed(8)) * 2 - 1
    z0 = with_gradients.forward_flat(x0.unsqueeze(0))[0]
    prop = Robustness().bind(z0, int(z0.argmax()))
    reached = {}
    for key, model in (("gradient", with_gradients), ("black-box", black_box)):
        region = Region(x0, 1.0, "2", -torch.ones(N_INPUTS), torch.ones(N_INPUTS))
        evaluator = Evaluator(model, prop.value)
        tracker = ViolationTracker(prop, region)
        evaluator.observers.append(tracker)
        if key == "black-box":
            differences = FiniteDifferences(evaluator, region)
            evaluator.gradient_estimate = differences.outputs
            assert differences.rows_per_gradient == N_INPUTS + 1
        fab_attack(prop, region, evaluator, x0.unsqueeze(0), steps=30)
        reached[key] = (tracker.best_distance, evaluator.evaluations)
    assert reached["gradient"][0] < float("inf")
    assert reached["black-box"][0] == pytest.approx(reached["gradient"][0], rel=0.01), reached
    assert reached["black-box"][1] >= reached["gradient"][1] + 30 * N_INPUTS * 0.5  # the differences are counted


def test_coordinate_points_beyond_the_batch_limit_run_in_chunks_with_the_same_differences(monkeypatch):
    """Large inputs: the n + 1 points of a coordinate-wise Jacobian go through the model per row
    in chunks (each with x itself), giving the same Jacobian as one batch, every row counted."""
    import saferisk.search.finite_difference as finite_difference

    _, black_box = _models()
    x = torch.rand(2, N_INPUTS, generator=torch.Generator().manual_seed(6)) * 1.8 - 0.9
    moving = torch.arange(N_INPUTS)
    results = {}
    for limit in (10 ** 9, 4 * N_INPUTS):  # one batch; chunks of 3 coordinates (plus x)
        monkeypatch.setattr(finite_difference, "POINT_ELEMENTS", limit)
        region = Region(torch.zeros(N_INPUTS), 1.0, "inf", -torch.ones(N_INPUTS), torch.ones(N_INPUTS))
        evaluator = Evaluator(black_box, lambda z: z[:, 0])
        results[limit] = (*FiniteDifferences(evaluator, region)._jacobians(x, moving), evaluator.evaluations)
    (z_one, jac_one, rows_one), (z_chunks, jac_chunks, rows_chunks) = results.values()
    assert rows_one == 2 * (N_INPUTS + 1) and rows_chunks == 2 * (N_INPUTS + math.ceil(N_INPUTS / 3))
    assert torch.allclose(z_one, z_chunks, atol=1e-6)
    assert torch.allclose(jac_one, jac_chunks, rtol=1e-3, atol=1e-3 * float(jac_one.abs().max()))


def test_anchors_give_way_to_random_directions_where_their_jacobians_would_not_fit(monkeypatch):
    import saferisk.search.finite_difference as finite_difference

    n = 2 * COORDINATE_LIMIT
    _, black_box = _models(n)
    monkeypatch.setattr(finite_difference, "ANCHOR_ELEMENTS", n * 4 * ANCHOR_COUNT - 1)  # 4 outputs: one too many
    region = Region(torch.zeros(n), 1.0, "inf", -torch.ones(n), torch.ones(n))
    evaluator = Evaluator(black_box, lambda z: z[:, 0], budget=10 ** 6)
    estimator = FiniteDifferences(evaluator, region)
    x = torch.rand(1, n, generator=torch.Generator().manual_seed(7)) * 1.8 - 0.9
    assert not estimator.anchored  # decided before the first estimate (the witness search plans by it)
    _jacobian_estimate(black_box, x, n, estimator=estimator)
    assert not estimator.anchors
    assert evaluator.evaluations == 2 * DIRECTIONS
