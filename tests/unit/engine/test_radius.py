"""The radius engine: soundness of the bracket where brute force is possible, and edge cases."""

from __future__ import annotations

from tests.paths import DEMO
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_mlp, paper_net, random_mlp
from saferisk.bounds import CertifyConfig
from saferisk.data.domain import Domain
from saferisk.errors import ConfigError, DataError
from saferisk.models.graph import Graph, Node
from saferisk.models.model import Model
from saferisk.norms import distance
from saferisk.properties import Invariance, Reachability, Robustness
from saferisk.radius import compute_radii, compute_radius
from saferisk.result import RESULT_FIELDS
from saferisk.search import SearchConfig

FAST = SearchConfig(budget=20_000, n_random=128)
CERTIFY = CertifyConfig(time_budget_s=1.5)


def load_witnesses(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def check_witness(model, prop, result, witnesses, domain, center=None, unit=None):
    """radius_upper carries a real violating input: re-run the model on the saved witness."""
    assert result.witness_ref is not None and result.witness_ref.endswith(f"#{result.input_id}")
    x0 = torch.as_tensor(witnesses[f"{result.input_id}/x0"])
    x = torch.as_tensor(witnesses[f"{result.input_id}/witness"])
    centre = x0 if center is None else torch.as_tensor(center, dtype=torch.float64)
    z0 = model.forward_flat(centre[None]).double()[0]
    z = model.forward_flat(x[None]).double()
    assert bool(torch.isfinite(z).all())
    bound = prop.bind(z0) if center is None else prop
    assert bool(bound.violated(z)[0]), "the saved witness does not violate the property"
    assert bool((x >= domain.lower - 1e-9).all()) and bool((x <= domain.upper + 1e-9).all())
    d = float(distance(x[None], centre, result.norm, unit)[0])
    assert d <= result.max_radius * (1 + 1e-6)
    assert d == pytest.approx(result.radius_upper, rel=1e-5, abs=1e-7)
    return x


def samples_in_ball(x0, radius, norm, domain, count, seed):
    """Uniform points of the L-inf box filtered to the p-ball, plus points on the p-sphere."""
    gen = torch.Generator().manual_seed(seed)
    n = x0.numel()
    u = x0 + radius * (2 * torch.rand(count, n, generator=gen, dtype=torch.float64) - 1)
    u = u[distance(u, x0, norm) <= radius]
    g = torch.randn(count // 2, n, generator=gen, dtype=torch.float64)
    if norm == "1":
        g = torch.sign(g) * torch.empty_like(g).exponential_(generator=gen)
    order = math.inf if norm == "inf" else float(norm)
    sphere = x0 + radius * g / torch.linalg.vector_norm(g, ord=order, dim=1, keepdim=True)
    pts = torch.cat([u, sphere])
    return torch.minimum(torch.maximum(pts, domain.lower), domain.upper)


# ----------------------------------------------------------------------------- soundness

@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_bracket_is_sound_on_a_2d_paper_net_against_a_dense_grid(reachability_nets, tmp_path, norm):
    model = paper_net(reachability_nets, 0)
    domain = Domain.scalar(0.0, 10.0, 2)
    x0 = torch.tensor([5.0, 5.0], dtype=torch.float64)
    value = float(model.forward_flat(x0[None])[0, 0])
    prop = Reachability(output=0, lower=value - 1.5)
    path = tmp_path / "w.npz"
    result = compute_radii(model, x0[None].numpy(), prop, norm, 4.0, domain, search=FAST, certify=CERTIFY,
                           witness_path=path)[0]
    assert result.status == "ok"
    assert result.radius_upper is not None and result.radius_lower is not None, result
    check_witness(model, prop, result, load_witnesses(path), domain)
    # brute force on a grid over the ball's box: the smallest violating distance r_grid >= r*
    g = torch.linspace(-4.0, 4.0, 801, dtype=torch.float64)
    grid = (x0 + torch.cartesian_prod(g, g)).clamp(0.0, 10.0)
    d = distance(grid, x0, norm)
    bad = model.forward_flat(grid)[:, 0].double() <= value - 1.5
    r_grid = float(d[bad].min())
    h = 0.01 * (2 if norm == "1" else 1)
    print(f"\nReLU-NN-0 {norm}: lower {result.radius_lower:.4f} estimate {result.radius_estimate:.4f} "
          f"upper {result.radius_upper:.4f} grid {r_grid:.4f} ({result.radius_lower_method})")
    assert result.radius_lower <= result.radius_upper
    assert not bool((bad & (d < result.radius_lower)).any()), "a violation inside the certified radius"
    assert result.radius_upper >= r_grid - h  # a witness can't beat the true radius (up to the grid step)
    assert result.radius_upper <= r_grid + 0.02  # and the search finds the closest violation
    assert result.estimate_exceeds_upper == (result.radius_estimate > result.radius_upper * (1 + 1e-9))


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_bracket_is_sound_on_a_tiny_mlp_against_random_samples(tmp_path, norm):
    model = random_mlp([4, 12, 12, 3], seed=11, scale=2.0)
    domain = Domain.scalar(-1.0, 1.0, 4)
    X = torch.tensor([[0.1, -0.2, 0.3, 0.0], [0.5, 0.5, -0.5, 0.2]], dtype=torch.float64)
    prop = Robustness()
    path = tmp_path / "w.npz"
    results = compute_radii(model, X.numpy(), prop, norm, 1.5, domain, search=FAST, certify=CERTIFY,
                            witness_path=path, seed=1)
    witnesses = load_witnesses(path)
    for x0, result in zip(X, results):
        assert result.status == "ok" and result.radius_upper is not None, result
        check_witness(model, prop, result, witnesses, domain)
        bound = prop.bind(model.forward_flat(x0[None]).double()[0])
        assert result.decision == bound.decision
        if result.radius_lower is not None:
            assert 0 <= result.radius_lower <= result.radius_upper  # 0 (with a reason) if the time budget ran out
            pts = samples_in_ball(x0, result.radius_lower * (1 - 1e-6), norm, domain, 100_000, seed=2)
            assert not bool(bound.violated(model.forward_flat(pts).double()).any())
        # dense sampling of the ball at radius_upper: nothing violates much closer than the witness
        pts = samples_in_ball(x0, result.radius_upper, norm, domain, 100_000, seed=3)
        bad = bound.violated(model.forward_flat(pts).double())
        if bool(bad.any()):
            closest = float(distance(pts[bad], x0, norm).min())
            assert result.radius_upper <= closest * 1.05 + 1e-3, (closest, result.radius_upper)
        assert result.estimate_exceeds_upper == (result.radius_estimate > result.radius_upper * (1 + 1e-9))
        print(f"\nmlp {norm} {result.input_id}: [{result.radius_lower}, {result.radius_upper:.4f}] "
              f"estimate {result.radius_estimate:.4f}")


def test_result_record_has_every_field(tmp_path):
    model = random_mlp([3, 8, 2], seed=1)
    result = compute_radius(model, [0.2, 0.4, 0.6], Robustness(), "inf", 0.5, Domain.scalar(0, 1, 3),
                            search=FAST, certify=False, input_id="a7")
    record = result.to_dict()
    assert set(RESULT_FIELDS) <= set(record)
    assert record["input_id"] == "a7" and record["property"] == "robustness" and record["norm"] == "inf"
    assert record["max_radius"] == 0.5 and record["scale"] == "input" and record["device"] == "cpu"
    assert record["radius_lower"] is None and "skipped" in record["radius_lower_method"]  # the reason it is null
    assert record["threshold"] == 0.0 and record["value_at_x0"] > 0
    assert record["lipschitz_estimate"] is not None and record["lipschitz_estimate"] > 0
    assert record["search_mode"].startswith("fast") and record["evaluations"] > 0 and record["seconds"] > 0


# ----------------------------------------------------------------------------- edge cases

def test_violated_at_input_gives_radius_zero():
    model = random_mlp([2, 8, 1], seed=4)
    x0 = torch.tensor([0.3, 0.3])
    value = float(model.forward_flat(x0[None])[0, 0])
    result = compute_radius(model, x0.numpy(), Reachability(output=0, lower=value + 0.5), "inf", 0.5,
                            Domain.scalar(0, 1, 2), search=FAST, certify=False)
    assert result.status == "violated_at_input"
    assert result.radius_estimate == 0.0 and result.radius_upper == 0.0 and result.radius_lower == 0.0
    assert result.value_at_x0 == pytest.approx(-0.5, abs=1e-5)  # w = o - lower
    assert result.radius_lower_method and result.witness_ref is None


def test_constant_network_estimate_is_max_radius_and_no_witness(tmp_path):
    model = build_mlp([torch.zeros(3, 2)], [torch.tensor([1.0, 0.0])])
    path = tmp_path / "w.npz"
    result = compute_radii(model, np.array([[0.5, 0.5, 0.5]]), Robustness(), "2", 0.7, Domain.scalar(0, 1, 3),
                           search=FAST, certify=False, witness_path=path)[0]
    assert result.status == "ok"
    assert result.radius_estimate == 0.7 and result.lipschitz_estimate == 0.0
    assert result.radius_upper is None and result.witness_ref is None
    assert not result.estimate_exceeds_upper
    assert load_witnesses(path) == {}


def _nan_model():
    """outputs = W sigmoid(x * (inf, 1)): NaN exactly where x[0] == 0, finite elsewhere."""
    nodes = [Node("affine", ["x"], "scaled", {"scale": torch.tensor([math.inf, 1.0]), "shift": None}),
             Node("sigmoid", ["scaled"], "s"),
             Node("linear", ["s"], "out", {"weight": torch.tensor([[1.0, 2.0], [0.5, -1.0]]), "bias": torch.zeros(2)})]
    return Model(Graph("x", "out", (2,), nodes), name="nan")


def test_nan_outputs_fail_only_that_input():
    model = _nan_model()
    X = np.array([[0.0, 0.5], [0.8, 0.5], [0.9, 0.1]])
    assert not bool(torch.isfinite(model.forward_flat(torch.tensor(X[:1]))).all())
    results = compute_radii(model, X, Robustness(), "inf", 0.3, Domain.scalar(0, 1, 2), search=FAST, certify=False)
    assert results[0].status.startswith("failed: ") and "NaN" in results[0].status
    assert results[0].radius_upper is None and results[0].radius_estimate is None
    assert [r.status for r in results[1:]] == ["ok", "ok"]
    assert all(r.radius_estimate is not None for r in results[1:])


def test_nan_inside_the_ball_never_becomes_a_witness(tmp_path):
    model = _nan_model()
    path = tmp_path / "w.npz"
    # the ball reaches x[0] == 0 (the domain edge, where projection lands): NaN there
    result = compute_radii(model, np.array([[0.1, 0.5]]), Robustness(), "inf", 0.5, Domain.scalar(0, 1, 2),
                           search=FAST, certify=False, witness_path=path)[0]
    assert result.status == "ok"
    if result.radius_upper is not None:
        x = torch.as_tensor(load_witnesses(path)["0/witness"])
        assert bool(torch.isfinite(model.forward_flat(x[None])).all())


def test_scale_domain_measures_fractions_of_each_feature_width():
    """o = x_a + x_b / 1e4 must stay >= 0.5; x0 = (0.8, 8000) in [0,1] x [0,1e4]: in domain
    fractions r* = (1.6 - 0.5) / 2 = 0.55; in input units no violation within 1.0."""
    model = build_mlp([torch.tensor([[1.0], [1e-4]])], [torch.zeros(1)])
    domain = Domain.from_bounds([0.0, 0.0], [1.0, 1e4], 2)
    prop = Reachability(output=0, lower=0.5)
    x0 = np.array([0.8, 8000.0])
    scaled = compute_radius(model, x0, prop, "inf", 1.0, domain, scale="domain", search=FAST, certify=CERTIFY)
    assert scaled.scale == "domain"
    assert 0.55 * (1 - 1e-5) <= scaled.radius_upper <= 0.55 * 1.02  # shrink_steps=6 bisects to ~1%
    assert scaled.radius_estimate == pytest.approx(0.55, rel=1e-2)
    assert scaled.radius_lower is not None and scaled.radius_lower <= scaled.radius_upper
    assert scaled.radius_lower == pytest.approx(0.55, rel=2e-2)
    raw = compute_radius(model, x0, prop, "inf", 1.0, domain, scale="input", search=FAST, certify=False)
    assert raw.scale == "input" and raw.radius_upper is None and raw.radius_estimate == 1.0
    with pytest.raises(DataError, match="finite domain"):
        compute_radius(model, x0, prop, "inf", 1.0, Domain.scalar(-np.inf, np.inf, 2), scale="domain", certify=False)


def test_invariance_reports_the_nearest_reference_and_the_minimum_over_k(tmp_path):
    from saferisk.demo import __file__ as demo_init
    from saferisk.models import load_model
    from pathlib import Path

    demo = Path(demo_init).parent
    model = load_model(demo / "digits_mlp.onnx")
    data = np.load(demo / "digits_test.npz")
    X, y = data["X"][:30], data["y"][:30]
    domain = Domain.scalar(0, 1, X.shape[1])
    path = tmp_path / "w.npz"
    k = 2
    results = compute_radii(model, X[:2], Invariance(k=k), "inf", 0.5, domain, labels=y[:2], ids=["a", "b"],
                            references=(X, y, [f"r{i}" for i in range(len(X))]), search=FAST, certify=False,
                            witness_path=path)
    witnesses = load_witnesses(path)
    for i, result in enumerate(results):
        refs = result.extra["references"]
        assert len(refs) == k
        # the k nearest differently-labelled inputs, by brute force
        others = [j for j in range(len(X)) if y[j] != y[i]]
        dists = np.abs(X[others] - X[i]).max(axis=1)
        nearest = [f"r{others[j]}" for j in np.argsort(dists, kind="stable")[:k]]
        assert [r["id"] for r in refs] == nearest
        for r in refs:
            assert r["distance"] == pytest.approx(float(np.abs(X[int(r["id"][1:])] - X[i]).max()), rel=1e-6)
        uppers = [r["radius_upper"] for r in refs if r["radius_upper"] is not None]
        assert result.radius_upper == (min(uppers) if uppers else None)
        assert result.extra["reference_id"] in nearest
        chosen = next(r for r in refs if r["id"] == result.extra["reference_id"])
        assert result.extra["reference_distance"] == chosen["distance"]
        if result.radius_upper is not None:
            assert chosen["radius_upper"] == result.radius_upper
            x1 = X[int(result.extra["reference_id"][1:])]
            bound = Invariance(k=k).bind(torch.zeros(10, dtype=torch.float64), label=int(y[i]))
            check_witness(model, bound, result, witnesses, domain, center=x1)
            z = model.forward_flat(torch.as_tensor(witnesses[f"{result.input_id}/witness"])[None])[0]
            assert int(z.argmax()) == int(y[i])  # the network outputs x0's label near x1
        print(f"\ninvariance {result.input_id}: upper {result.radius_upper} via {result.extra['reference_id']} "
              f"at {result.extra['reference_distance']:.3f}")


def test_invariance_needs_labels_and_references():
    model = random_mlp([3, 4, 2], seed=0)
    with pytest.raises(DataError, match="label"):
        compute_radii(model, np.zeros((2, 3)), Invariance(), "inf", 0.1, Domain.scalar(0, 1, 3), certify=False)
    with pytest.raises(DataError, match="different label"):
        compute_radii(model, np.zeros((2, 3)), Invariance(), "inf", 0.1, Domain.scalar(0, 1, 3), labels=[1, 1],
                      certify=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_radius": 0.0}, ConfigError, "max radius"),
    ({"max_radius": -1.0}, ConfigError, "max radius"),
    ({"max_radius": float("nan")}, ConfigError, "max radius"),
    ({"norm": "3"}, ConfigError, "unknown norm"),
    ({"x0": [0.1, 0.2]}, DataError, "expects 3"),
    ({"x0": [0.1, 0.2, 1.5]}, DataError, "outside the domain"),
    ({"x0": [0.1, float("nan"), 0.5]}, DataError, "NaN"),
    ({"scale": "pixels"}, ConfigError, "scale"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, message):
    model = random_mlp([3, 4, 2], seed=0)
    args = {"x0": [0.1, 0.2, 0.3], "norm": "inf", "max_radius": 0.1}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        compute_radius(model, args.pop("x0"), Robustness(), args.pop("norm"), args.pop("max_radius"),
                       Domain.scalar(0, 1, 3), certify=False, **args)


def test_input_within_tolerance_of_the_domain_is_clipped():
    model = random_mlp([3, 4, 2], seed=0)
    result = compute_radius(model, [1.0 + 5e-7, 0.2, -5e-7], Robustness(), "inf", 0.1, Domain.scalar(0, 1, 3),
                            search=FAST, certify=False)
    assert result.status == "ok"


@pytest.mark.parametrize("prop", [Robustness(decision="argmin"), Robustness(target_classes=(0, 2)),
                                  "uncertainty", "reach_weights"],
                         ids=["argmin", "target_classes", "uncertainty", "reach_weights"])
def test_witness_and_lower_bound_are_sound_for_every_property(tmp_path, prop):
    from saferisk.properties import Uncertainty

    model = random_mlp([3, 10, 10, 3], seed=21, scale=2.5)
    domain = Domain.scalar(-1.0, 1.0, 3)
    x0 = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
    z0 = model.forward_flat(x0[None]).double()[0]
    if prop == "uncertainty":  # threshold half the KL at x0, so a violation exists nearby
        from saferisk.properties import kl_uniform_softmax
        prop = Uncertainty(epsilon=float(kl_uniform_softmax(z0[None])[0]) * 0.5)
    elif prop == "reach_weights":  # o = z0 - z1 + z2 / 2 must stay above o(x0) - 0.5
        weights = (1.0, -1.0, 0.5)
        prop = Reachability(output=weights, lower=float(z0 @ torch.tensor(weights, dtype=torch.float64)) - 0.5)
    path = tmp_path / "w.npz"
    result = compute_radii(model, x0[None].numpy(), prop, "2", 2.0, domain, search=FAST, certify=CERTIFY,
                           witness_path=path)[0]
    bound = prop.bind(z0)
    print(f"\n{prop}: [{result.radius_lower}, {result.radius_upper}] estimate {result.radius_estimate} "
          f"({result.radius_lower_method})")
    assert result.status == "ok"
    assert result.radius_upper is not None
    check_witness(model, prop, result, load_witnesses(path), domain)
    pts = samples_in_ball(x0, result.radius_upper, "2", domain, 100_000, seed=4)
    bad = bound.violated(model.forward_flat(pts).double())
    if bool(bad.any()):
        assert result.radius_upper <= float(distance(pts[bad], x0, "2").min()) * 1.05 + 1e-3
    assert result.radius_lower is not None
    if result.radius_lower > 0:
        assert result.radius_lower_method in ("ibp", "crown", "alpha-crown", "bab")
    else:  # a trivial bound says why (e.g. the uncertainty spec's linear bound is not positive at x0)
        assert result.radius_lower_method not in ("ibp", "crown", "alpha-crown", "bab", "bounds")
    if result.radius_lower > 0:
        assert result.radius_lower <= result.radius_upper
        pts = samples_in_ball(x0, result.radius_lower * (1 - 1e-6), "2", domain, 100_000, seed=5)
        assert not bool(bound.violated(model.forward_flat(pts).double()).any())


def test_a_certification_cut_short_by_its_budget_is_flagged_in_the_record():
    """The flag travels from the bounds to the result record (extra), for reports to count."""
    from saferisk.bounds import CertifyConfig
    from saferisk.data.domain import Domain
    from saferisk.models import load_model
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius
    from saferisk.search import SearchConfig

    model = load_model(DEMO / "digits_cnn.onnx")
    x0 = np.load(DEMO / "digits_test.npz")["X"][0]
    domain, search = Domain.scalar(0.0, 1.0, 64), SearchConfig(budget=500)
    cut = compute_radius(model, x0, Robustness(), "inf", 0.3, domain, search=search,
                         certify=CertifyConfig(method="crown", time_budget_s=1e-6))
    assert cut.to_dict()["extra"].get("certify_budget_exhausted") is True
    ample = compute_radius(model, x0, Robustness(), "inf", 0.3, domain, search=search,
                           certify=CertifyConfig(method="crown", time_budget_s=60, work_budget=None))
    assert "certify_budget_exhausted" not in ample.to_dict()["extra"] and ample.radius_lower is not None


def test_polls_run_in_onnxruntime_or_the_faster_runtime_when_asked():
    """search.poll_evaluator: the derivative-free polls in onnxruntime (the same ONNX file) give
    the same bracket to float32 accuracy; `fastest` times both runtimes once and says which ran."""
    import dataclasses

    from saferisk.data.domain import Domain
    from saferisk.models import load_model
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius
    from saferisk.search import SearchConfig

    model = load_model(DEMO / "digits_mlp.onnx")
    with np.load(DEMO / "digits_test.npz") as data:
        x0 = data["X"][3].astype(np.float64)
    search = SearchConfig(budget=3000)
    results = {}
    for choice in ("model", "onnxruntime", "fastest"):
        results[choice] = compute_radius(model, x0, Robustness(), "inf", 0.3, Domain.scalar(0.0, 1.0, 64),
                                         search=dataclasses.replace(search, poll_evaluator=choice), certify=False, seed=0)
    assert "poll_evaluator" not in results["model"].extra
    assert results["onnxruntime"].extra["poll_evaluator"] == "onnxruntime"
    assert results["onnxruntime"].evaluator == "torch"  # the model's evaluator; gradients still from the graph
    for choice in ("onnxruntime", "fastest"):
        assert results[choice].radius_estimate == pytest.approx(results["model"].radius_estimate, rel=1e-3)
        assert results[choice].radius_upper == pytest.approx(results["model"].radius_upper, rel=1e-2)
    timings = model.poll_timings()
    faster = min(timings, key=timings.get)
    assert results["fastest"].extra.get("poll_evaluator", "torch") == faster
    with pytest.raises(Exception, match="poll_evaluator must be one of"):
        SearchConfig(poll_evaluator="gpu")
