"""Square-attack-style score-based search (saferisk.search.square) on models run by onnxruntime
only: it finds violations near the gradient path's witness radius, every point it evaluates lies
in the ball and the domain box, it is deterministic, and it beats random sampling in 784 dims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saferisk.data.domain import Domain
from saferisk.demo import demo_path
from saferisk.models.load import module_to_onnx, read_forward
from saferisk.models.model import Model
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search.region import Evaluator, Region
from saferisk.search.square import SquareLayout, bump, fill_sphere, schedule, square_search
from saferisk.search.witness import ViolationTracker

pytest.importorskip("onnxruntime")
from saferisk.models.ort import OnnxRuntimeForward  # noqa: E402

MAX_RADIUS = {"inf": 0.5, "2": 4.0, "1": 20.0}
BUDGET = {"iterations": 300, "restarts": 4}  # <= 4 x 301 + 1 forward rows per search


def _black_box(onnx: bytes) -> Model:
    return Model(None, runtime=OnnxRuntimeForward(onnx), name="black-box", graph_error="black-box run")


def _digits(name: str) -> tuple[Model, Model, np.ndarray]:
    """(the demo model through saferisk's graph: gradients; the same file through onnxruntime only; test images)."""
    data = demo_path(f"{name}.onnx").read_bytes()
    graph = Model(read_forward(data).graph, name=name, onnx_bytes=data)
    with np.load(demo_path("digits_test.npz")) as test:
        X = test["X"].astype(np.float64)
    return graph, _black_box(data), X


class PointLog:
    """Observer keeping every evaluated row."""

    def __init__(self):
        self.rows: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, w: torch.Tensor) -> None:
        self.rows.append(x.detach().clone())

    @property
    def points(self) -> torch.Tensor:
        return torch.cat(self.rows)


def _search(model: Model, x0: torch.Tensor, radius: float, norm: str, seed: int = 0, unit=None, lower=None, upper=None,
            **budget):
    """Run square_search in B_p(x0, radius) ∩ box on the robustness property at x0; returns
    (tracker, log of every evaluated point, region, evaluator, returned points)."""
    n = x0.numel()
    lower = torch.zeros(n) if lower is None else lower
    upper = torch.ones(n) if upper is None else upper
    prop = Robustness().bind(model.forward_flat(x0.unsqueeze(0))[0].double())
    region = Region(x0, radius, norm, lower, upper, unit)
    evaluator = Evaluator(model, prop.value)
    tracker, log = ViolationTracker(prop, region), PointLog()
    evaluator.observers += [tracker, log]
    best = square_search(prop, region, evaluator, torch.Generator().manual_seed(seed), **{**BUDGET, **budget},
                         stop=lambda: tracker.best_distance <= region.radius * (1 + 1e-6))
    return tracker, log, region, evaluator, best


def _assert_inside(points: torch.Tensor, region: Region) -> None:
    assert bool((points >= region.lower).all()) and bool((points <= region.upper).all())
    distance = region.distance(points)
    assert float(distance.max()) <= region.radius * (1 + 1e-5) + 1e-7, (region.norm, float(distance.max()), region.radius)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_finds_a_violation_at_1_5_times_the_gradient_witness_radius_inside_ball_and_box(name, norm):
    graph, black_box, X = _digits(name)
    for i in range(2):
        gradient = compute_radius(graph, X[i], Robustness(), norm, MAX_RADIUS[norm], Domain.scalar(0.0, 1.0, 64),
                                  certify=False).radius_upper
        assert gradient is not None
        x0 = torch.as_tensor(X[i], dtype=torch.float32)
        tracker, log, region, evaluator, best = _search(black_box, x0, 1.5 * gradient, norm)
        assert tracker.best_x is not None, (name, norm, i, gradient)
        assert tracker.best_distance <= region.radius * (1 + 1e-5)
        assert evaluator.evaluations <= BUDGET["restarts"] * (BUDGET["iterations"] + 1) + 1
        _assert_inside(log.points, region)
        assert best.shape == (BUDGET["restarts"], 64)
        _assert_inside(best, region)


def _small_mlp(n: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).eval()


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_every_evaluated_point_lies_in_the_scaled_ball_and_the_box(norm):
    """A flat input of 10 features (a 4 x 3 grid with 2 padding cells), per-feature units, a
    box of its own per feature and x0 on a face of it: nothing evaluated leaves ball or box."""
    n = 10
    model = _black_box(module_to_onnx(_small_mlp(n), (n,)))
    lower = torch.linspace(-1.0, 0.0, n)
    upper = lower + torch.linspace(0.5, 2.0, n)
    x0 = (lower + upper) / 2
    x0[:3] = lower[:3]  # on the lower face
    x0[3] = upper[3]
    unit = torch.linspace(0.2, 1.5, n)
    radius = {"inf": 0.6, "2": 1.2, "1": 2.0}[norm]
    tracker, log, region, evaluator, best = _search(model, x0, radius, norm, unit=unit, lower=lower, upper=upper,
                                                    iterations=150, restarts=3)
    points = log.points
    assert points.shape[0] == evaluator.evaluations > 100
    _assert_inside(points, region)
    _assert_inside(best, region)
    if norm != "inf":  # the L2/L1 proposals use the whole ball where the box allows: most lie on its sphere
        on_sphere = region.distance(points) >= radius * (1 - 1e-4)
        assert float(on_sphere.double().mean()) > 0.5


def test_same_seed_same_points_and_another_seed_differs():
    graph, black_box, X = _digits("digits_cnn")
    x0 = torch.as_tensor(X[3], dtype=torch.float32)
    for norm, radius in (("inf", 0.05), ("2", 0.3)):  # below the witness radii: the full budget runs
        runs = [_search(black_box, x0, radius, norm, seed=seed, iterations=100) for seed in (7, 7, 8)]
        (_, log_a, _, ev_a, best_a), (_, log_b, _, ev_b, best_b), (_, log_c, _, _, best_c) = runs
        assert ev_a.evaluations == ev_b.evaluations
        assert torch.equal(log_a.points, log_b.points) and torch.equal(best_a, best_b)
        assert not torch.equal(log_a.points, log_c.points)


def _smooth_mlp(n: int = 784, seed: int = 3) -> nn.Module:
    """A ReLU MLP on 28 x 28 images whose first-layer weights vary smoothly over the image (7 x 7
    random fields, upsampled), as trained image models' do; the squares exploit that locality."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    with torch.no_grad():
        fields = nn.functional.interpolate(torch.randn(32, 1, 7, 7), size=(28, 28), mode="bilinear", align_corners=False)
        net[0].weight.copy_(fields.reshape(32, n) / 28)
    return net


def _beats_sampling(graph: Model, black_box: Model, x0: torch.Tensor, label: int | None, norm: str, factor: float,
                    **budget) -> None:
    """Square finds a violation at `factor` x the gradient path's witness radius; as many uniform
    samples of the ball (Region.sample) as its whole budget find none."""
    n = x0.numel()
    gradient = compute_radius(graph, x0.double().numpy(), Robustness(), norm, MAX_RADIUS[norm], Domain.scalar(0.0, 1.0, n),
                              label=label, certify=False).radius_upper
    assert gradient is not None
    tracker, log, region, evaluator, _ = _search(black_box, x0, factor * gradient, norm, **budget)
    assert tracker.best_x is not None, norm
    _assert_inside(log.points, region)
    prop = Robustness().bind(black_box.forward_flat(x0.unsqueeze(0))[0].double())
    samples = region.sample(budget["restarts"] * (budget["iterations"] + 1), torch.Generator().manual_seed(0))
    w = prop.value(black_box.forward_flat(samples).double())
    assert bool((w > prop.threshold).all()), norm  # random sampling alone finds nothing there


def test_beats_random_sampling_with_the_same_evaluations_in_784_dimensions():
    """784 flat inputs (squares on the 28 x 28 grid): L-inf at 1.5x, L2 at 2x the gradient path's radius."""
    n = 784
    onnx = module_to_onnx(_smooth_mlp(n), (n,))
    graph, black_box = Model(read_forward(onnx).graph, name="graph", onnx_bytes=onnx), _black_box(onnx)
    assert SquareLayout.of(black_box.input_shape, n) == SquareLayout(1, 28, 28, n, False)
    x0 = torch.rand(n, generator=torch.Generator().manual_seed(0))
    _beats_sampling(graph, black_box, x0, None, "inf", 1.5, iterations=2000, restarts=2)
    _beats_sampling(graph, black_box, x0, None, "2", 2.0, iterations=2000, restarts=2)


def test_beats_random_sampling_on_mnist_net_256x2(shared_dir):
    """The VNN-COMP MNIST MLP (input shape (784, 1): the 28 x 28 grid) on the image of property 1, L-inf."""
    folder = shared_dir / "vnncomp" / "mnistfc"
    if not (folder / "mnist-net_256x2.onnx").is_file():
        pytest.skip(f"{folder} is not available")
    from saferisk.data.vnnlib import load_vnnlib

    data = (folder / "mnist-net_256x2.onnx").read_bytes()
    graph, black_box = Model(read_forward(data).graph, name="graph", onnx_bytes=data), _black_box(data)
    spec = load_vnnlib(folder / "prop_1_0.05.vnnlib")
    lower, upper = np.asarray(spec.lower, dtype=np.float64).reshape(-1), np.asarray(spec.upper, dtype=np.float64).reshape(-1)
    x0 = torch.as_tensor(np.where(lower > 0, lower + 0.05, upper - 0.05), dtype=torch.float32)
    _beats_sampling(graph, black_box, x0, int(spec.label), "inf", 1.5, iterations=1000, restarts=4)


def test_layout_schedule_bumps_and_sphere_filling():
    # the model's (C, H, W) layout; flat vectors as the squarest grid, padded
    image = SquareLayout.of((3, 4, 5), 60)
    x = torch.arange(120.0).reshape(2, 60)
    assert image.image and image.to_grid(x).shape == (2, 4, 5, 3)
    assert torch.equal(image.to_flat(image.to_grid(x)), x)
    flat = SquareLayout.of((10,), 10)
    assert (flat.height, flat.width, flat.image) == (3, 4, False)
    grid = flat.to_grid(x[:, :10])
    assert grid.shape == (2, 3, 4, 1) and float(grid[0, 2, 2:, 0].abs().sum()) == 0  # padding cells
    assert torch.equal(flat.to_flat(grid), x[:, :10])
    # the paper's schedule, rescaled: p_init, then halved at 10, 50, ... 8000 of 10 000 iterations
    assert schedule(0, 1000, 0.4) == 0.4 and schedule(2, 1000, 0.4) == 0.2 and schedule(999, 1000, 0.4) == 0.4 / 512
    # bumps: unit p-norm, positive top half, negative bottom half
    for norm, order in (("2", 2), ("1", 1)):
        for side in (1, 2, 5, 8):
            b = bump(side, norm)
            assert float(torch.linalg.vector_norm(b.reshape(-1), ord=order)) == pytest.approx(1.0)
            assert bool((b[side // 2:] < 0).all()) and bool((b[: side // 2] > 0).all())
    # fill_sphere: clip(t d) on the sphere where the box allows it, else the box corner along d
    g = torch.Generator().manual_seed(0)
    lower, upper = -torch.rand(50, generator=g) * (torch.rand(50, generator=g) < 0.7), torch.rand(50, generator=g)
    d = torch.randn(6, 50, generator=g, dtype=torch.float64)
    for norm, order in (("2", 2), ("1", 1)):
        for radius in (0.3, 100.0):
            filled = fill_sphere(d / torch.linalg.vector_norm(d, ord=order, dim=1, keepdim=True) * radius,
                                 lower.double(), upper.double(), radius, norm)
            assert bool((filled >= lower).all()) and bool((filled <= upper).all())
            corner = torch.where(d > 0, upper.double(), lower.double())
            expected = torch.minimum(torch.linalg.vector_norm(corner, ord=order, dim=1), torch.tensor(radius, dtype=torch.float64))
            assert torch.allclose(torch.linalg.vector_norm(filled, ord=order, dim=1), expected, rtol=1e-9)
            assert bool((torch.sign(filled) * torch.sign(d) >= 0).all())  # along d
