"""Black-box witnesses on image-size inputs: saferisk's witness search on a model run by
onnxruntime only (finite-difference gradients: anchored coordinate-wise Jacobians beyond
1024 features, `saferisk.search.finite_difference`) against the same search with the model's
own gradients, on seeded random-weight CNNs of 3 x 24 x 24, 3 x 64 x 64 and 3 x 128 x 128
inputs, at the default budget and at a small `black_box_budget`; beside it, where affordable,
the same black-box search with random-direction estimates (anchors only where ANCHOR_COUNT of
them fit the budget, the rule before MIN_ANCHORS)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch

from benchmarks.common import BenchReport, Goal, Table

NAME = "black_box"
# (input side, inputs, budget: None = the default, or a count of anchors' rows; random directions too)
CASES = ((24, 2, None, True), (24, 2, 4, True), (64, 2, None, True), (128, 2, None, False))
QUICK_CASES = ((24, 1, None, False), (24, 1, 4, True))
NORMS = (("inf", 0.5), ("2", 10.0))  # (norm, max radius) in [0, 1] pixel units
WITHIN = 1.05  # the black-box path's goal: within 5% of the gradient path's radius


def _cnn(side: int) -> torch.nn.Module:
    """Two strided 3x3 convolutions, 2 x 2 average pooling, 10 classes; seeded weights."""
    torch.manual_seed(side)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10)).eval()


@contextmanager
def _anchors_where_all_fit():
    """The estimates as before MIN_ANCHORS: anchored only where ANCHOR_COUNT anchors fit the budget."""
    from saferisk.search import finite_difference

    saved = finite_difference.MIN_ANCHORS
    finite_difference.MIN_ANCHORS = finite_difference.ANCHOR_COUNT
    try:
        yield
    finally:
        finite_difference.MIN_ANCHORS = saved


def _radius(model, x0: np.ndarray, norm: str, max_radius: float, search) -> tuple[float | None, float, int]:
    """(witness radius or None, seconds, forward rows) of `compute_radius` without certification."""
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius

    start = time.perf_counter()
    result = compute_radius(model, x0, Robustness(), norm, max_radius, Domain.scalar(0.0, 1.0, x0.size),
                            certify=False, search=search)
    return result.radius_upper, time.perf_counter() - start, int(result.evaluations)


def run(quick: bool = False) -> BenchReport:
    from saferisk.models.load import module_to_onnx, read_forward
    from saferisk.models.model import Model
    from saferisk.models.ort import OnnxRuntimeForward
    from saferisk.search import SearchConfig
    from saferisk.search.finite_difference import DIRECTIONS

    report = BenchReport(NAME, "Black-box witnesses on image-size inputs (finite differences vs the model's gradients)")
    table = Table("Witness radius per input: gradient path, black-box path (anchored estimates), and with random "
                  "directions (the rule before)",
                  ["input", "budget (rows)", "norm", "#", "gradient", "black-box", "ratio", "black-box s",
                   "rows used", "random directions", "ratio", "s"])
    ratios, default_ratios = [], []
    for side, count, anchors, compare in QUICK_CASES if quick else CASES:
        module = _cnn(side)
        shape = (3, side, side)
        n = int(np.prod(shape))
        onnx = module_to_onnx(module, shape)
        with_gradients = Model(read_forward(onnx).graph, name="graph", onnx_bytes=onnx)
        black_box = Model(None, runtime=OnnxRuntimeForward(onnx), name="black-box")
        search = SearchConfig(black_box_budget=None if anchors is None else anchors * (n + 1))
        budget = search.budget_for(black_box)
        rng = np.random.default_rng(side)
        for norm, max_radius in NORMS:
            for i in range(count):
                x0 = rng.random(n)
                gradient, _, _ = _radius(with_gradients, x0, norm, max_radius, search)
                found, seconds, rows = _radius(black_box, x0, norm, max_radius, search)
                ratio = None if found is None or not gradient else found / gradient
                old = (None, None, None)
                if compare:
                    with _anchors_where_all_fit():
                        old = _radius(black_box, x0, norm, max_radius, search)
                old_ratio = None if old[0] is None or not gradient else old[0] / gradient
                ratios.append(ratio)
                if anchors is None:
                    default_ratios.append(ratio)
                table.add(f"3x{side}x{side}", f"{budget}{'' if anchors is None else f' ({anchors} anchors)'}",
                          norm, i, gradient, found, ratio, seconds, rows, old[0], old_ratio, old[1])
    table.notes.append("an anchored Jacobian costs n + 1 rows (a few more where its points run in chunks), a "
                       f"random-direction estimate {2 * DIRECTIONS}; random directions: '-' where not run "
                       "(3x128x128: ~100 s per input)")
    report.tables.append(table)
    worst = max((r for r in default_ratios if r is not None), default=None)
    missing = sum(r is None for r in default_ratios)
    report.goals.append(Goal(f"black-box path within {WITHIN - 1:.0%} of the gradient path at the default budget, "
                             "every input", f"worst ratio {worst:.4g}, {missing} without a witness" if worst else
                             f"{missing} without a witness", worst is not None and missing == 0 and worst <= WITHIN))
    report.notes.append("random-weight CNNs (seeded), inputs uniform in [0, 1]^n; radii of compute_radius without "
                        "certification (the Lipschitz estimate's search included, as in an audit)")
    return report
