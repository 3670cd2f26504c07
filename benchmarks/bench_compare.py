"""saferisk's bracket against what practitioners use instead: CLEVER (ART's clever_u), PGD with
bisection on the radius, and the EXACT L-inf radius (MILP) where affordable (small ReLU MLP)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks.attacks import art_available, clever_linf, pgd_bisection_radius
from benchmarks.common import BenchReport, Goal, Table, digits_test_set, fmt, timer, torch_to_model
from benchmarks.exact import exact_linf_radius

NAME = "compare"
MAX_RADIUS = 0.2
SOUNDNESS_TOLERANCE = 1e-4


@dataclass
class InputRow:
    index: int
    label: int
    exact: float | None = None
    exact_seconds: float | None = None
    lower: float | None = None
    estimate: float | None = None
    upper: float | None = None
    ours_seconds: float = 0.0
    clever: float | None = None
    clever_seconds: float | None = None
    pgd: float | None = None
    pgd_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _max(values) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def evaluate(module: torch.nn.Module, input_shape: tuple[int, ...], name: str, X: np.ndarray, y: np.ndarray,
             count: int, exact: bool, clever_reason: str | None) -> list[InputRow]:
    """Every method on the first `count` correctly classified inputs."""
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius

    model = torch_to_model(module, input_shape, name)
    domain = Domain.scalar(0.0, 1.0, model.n_inputs)
    with torch.no_grad():
        pred = module(torch.as_tensor(X, dtype=torch.float32).reshape(-1, *input_shape)).argmax(1).numpy()
    chosen = np.flatnonzero(pred == y)[:count]
    layers = [m for m in module if isinstance(m, torch.nn.Linear)]
    weights = [m.weight.detach().double().numpy() for m in layers]
    biases = [m.bias.detach().double().numpy() for m in layers]
    rows = []
    for i in chosen:
        x0, label = X[i], int(y[i])
        row = InputRow(int(i), label)
        if exact:
            ex = exact_linf_radius(weights, biases, x0, label, MAX_RADIUS)
            row.exact, row.exact_seconds = ex.radius, ex.seconds
            if ex.x is not None:  # self-check: the MILP minimiser lies on the decision boundary
                with torch.no_grad():
                    z = module.double()(torch.as_tensor(ex.x[None]).reshape(1, *input_shape))[0]
                module.float()
                gap = float(z[ex.target] - z[label])
                if gap < -1e-5 or abs(float((torch.as_tensor(ex.x) - torch.as_tensor(x0)).abs().max()) - ex.radius) > 1e-6:
                    raise RuntimeError(f"MILP self-check failed on input {i}: margin gap {gap}")
            row.extra["exact_censored"] = ex.radius is None
        with timer() as t:
            res = compute_radius(model, x0, Robustness(), "inf", MAX_RADIUS, domain, label=label,
                                 input_id=str(i), seed=0)
        row.lower, row.estimate, row.upper, row.ours_seconds = res.radius_lower, res.radius_estimate, res.radius_upper, t[0]
        row.extra["lower_method"] = res.radius_lower_method
        pgd = pgd_bisection_radius(module, x0.reshape(-1), label, MAX_RADIUS, seed=int(i))
        row.pgd, row.pgd_seconds = pgd.radius, pgd.seconds
        if clever_reason is None:
            row.clever, row.clever_seconds = clever_linf(module, x0, 10, input_shape, MAX_RADIUS, seed=int(i))
        rows.append(row)
    return rows


def summary_table(title: str, rows: list[InputRow], exact: bool) -> Table:
    def err(values):  # |value - exact| per input where both exist
        return [abs(v - r.exact) for v, r in zip(values, rows) if v is not None and r.exact is not None]

    columns = ["method", "answered", "time per input (s)", "mean value"]
    if exact:
        columns += ["mean |error| vs exact", "max |error|", "unsound inputs"]
    table = Table(title, columns)

    def add(method, times, values, soundness=None):
        answered = f"{sum(v is not None for v in values)}/{len(values)}"
        cells = [method, answered, _mean(times), _mean(values)]
        if exact:
            e = err(values)
            cells += [_mean(e), _max(e), soundness if soundness is not None else "-"]
        table.add(*cells)

    if exact:
        add("exact (MILP, HiGHS)", [r.exact_seconds for r in rows], [r.exact for r in rows])
    bracket_times = [r.ours_seconds for r in rows]
    lower_bad = sum(1 for r in rows if r.lower is not None and r.exact is not None and r.lower > r.exact + SOUNDNESS_TOLERANCE)
    upper_bad = sum(1 for r in rows if r.upper is not None and r.exact is not None and r.upper < r.exact - SOUNDNESS_TOLERANCE)
    add("saferisk certified lower", bracket_times, [r.lower for r in rows], f"{lower_bad}/{len(rows)}" if exact else None)
    add("saferisk estimate r_hat", bracket_times, [r.estimate for r in rows])
    add("saferisk witness upper", bracket_times, [r.upper for r in rows], f"{upper_bad}/{len(rows)}" if exact else None)
    both = [r for r in rows if r.lower is not None and r.upper is not None]
    widths = [r.upper - r.lower for r in both]
    relative = _relative_widths(rows)
    table.add("saferisk bracket width (upper - lower)", f"{len(both)}/{len(rows)}", _mean(bracket_times), _mean(widths),
              *(([f"relative: mean {_mean(relative):.3g}", f"relative: max {_max(relative):.3g}", "-"] if relative
                 else ["-", "-", "-"]) if exact else []))
    add("CLEVER (ART clever_u)", [r.clever_seconds for r in rows], [r.clever for r in rows])
    pgd_bad = sum(1 for r in rows if r.pgd is not None and r.exact is not None and r.pgd < r.exact - SOUNDNESS_TOLERANCE)
    add("PGD + bisection", [r.pgd_seconds for r in rows], [r.pgd for r in rows], f"{pgd_bad}/{len(rows)}" if exact else None)
    table.notes.append("saferisk's time is the whole bracket (certified lower, estimate and witness upper) from one "
                       "`compute_radius` call; 'unsound' counts a lower bound above the exact radius or an upper bound "
                       f"below it (tolerance {SOUNDNESS_TOLERANCE}). Mean values over inputs where the method returned one; "
                       "'answered' counts the inputs where it returned a value: a missing lower bound (not certified) or "
                       "upper bound (no violation found within the max radius) is left out of the means.")
    return table


def _relative_widths(rows: list[InputRow]) -> list[float]:
    """(upper - lower) / upper of every input with both ends of the bracket (upper > 0)."""
    return [(r.upper - r.lower) / r.upper for r in rows if r.lower is not None and r.upper]


def per_input_table(title: str, rows: list[InputRow], exact: bool) -> Table:
    columns = ["test input", "label"] + (["exact"] if exact else []) + [
        "lower", "estimate", "upper", "CLEVER", "PGD", "ours (s)", "CLEVER (s)", "PGD (s)"] + (["MILP (s)"] if exact else [])
    table = Table(title, columns)
    for r in rows:
        cells = [r.index, r.label] + ([r.exact if r.exact is not None else f">= {MAX_RADIUS}"] if exact else [])
        cells += [r.lower, r.estimate, r.upper, r.clever, r.pgd, r.ours_seconds, r.clever_seconds, r.pgd_seconds]
        if exact:
            cells.append(r.exact_seconds)
        table.add(*cells)
    return table


def goals(rows: list[InputRow]) -> list[Goal]:
    out = []
    t_ours, t_clever = _mean([r.ours_seconds for r in rows]), _mean([r.clever_seconds for r in rows])
    if t_clever is None:
        out.append(Goal("full bracket per input at least 10x faster than CLEVER", "CLEVER not run", None))
    else:
        out.append(Goal("full bracket per input at least 10x faster than CLEVER", f"{t_clever / t_ours:.1f}x",
                        t_clever / t_ours >= 10))
    both = [r for r in rows if r.exact is not None and r.estimate is not None and r.clever is not None]
    if both:
        e_ours = statistics.fmean(abs(r.estimate - r.exact) for r in both)
        e_clever = statistics.fmean(abs(r.clever - r.exact) for r in both)
        out.append(Goal("estimate error no larger than CLEVER's (mean |error| vs exact)",
                        f"ours {e_ours:.4f}, CLEVER {e_clever:.4f}", e_ours <= e_clever))
    else:
        out.append(Goal("estimate error no larger than CLEVER's", "no input with exact, estimate and CLEVER", None))
    paired = [r for r in rows if r.pgd is not None]
    tighter = sum(1 for r in paired if r.upper is not None and r.upper <= r.pgd + 1e-9)
    within = sum(1 for r in paired if r.upper is not None and r.upper <= r.pgd * 1.01 + 1e-9)
    out.append(Goal("witness bound at least as tight as PGD's (per input)",
                    f"{tighter}/{len(paired)} inputs (within 1 %: {within}/{len(paired)})",
                    bool(paired) and tighter == len(paired)))
    exact_rows = [r for r in paired if r.exact is not None and r.upper is not None]
    if exact_rows:
        e_upper = statistics.fmean(r.upper - r.exact for r in exact_rows)
        e_pgd = statistics.fmean(r.pgd - r.exact for r in exact_rows)
        out.append(Goal("witness bound at least as tight as PGD's (mean excess over the exact radius)",
                        f"witness {e_upper:.2e}, PGD {e_pgd:.2e}", e_upper <= e_pgd))
    return out


def run(quick: bool = False) -> BenchReport:
    from saferisk.demo import nets
    from saferisk.demo.train import accuracy, digits_split, train_classifier

    report = BenchReport(NAME, "saferisk vs CLEVER, PGD and the exact radius (digits, L-inf)", quick=quick)
    clever_reason = art_available()
    if clever_reason:
        report.notes.append(f"CLEVER columns empty: {clever_reason}")
    split = digits_split()
    X, y = digits_test_set()
    small = train_classifier(nets.digits_mlp_small(), split.X_train, split.y_train, (64,))
    acc = accuracy(small, X, y, (64,))
    count = 4 if quick else 25
    rows = evaluate(small, (64,), "digits_mlp_small", X, y, count, exact=True, clever_reason=clever_reason)
    title = f"MLP 64-16-10 (trained here, test accuracy {acc:.3f}), L-inf, max radius {MAX_RADIUS}, {len(rows)} inputs"
    report.tables.append(summary_table(title, rows, exact=True))
    report.tables.append(per_input_table("Per input (MLP 64-16-10)", rows, exact=True))
    report.goals += goals(rows)

    from safetensors.torch import load_file

    from saferisk.demo import demo_path

    mlp = nets.digits_mlp()
    mlp.load_state_dict(load_file(str(demo_path("digits_mlp.safetensors"))))
    rows_big = evaluate(mlp, (64,), "digits_mlp", X, y, 1 if quick else 8, exact=False, clever_reason=clever_reason)
    report.tables.append(summary_table(f"Shipped demo MLP 64-64-32-10 (no exact radius), {len(rows_big)} inputs",
                                       rows_big, exact=False))
    t_ours = _mean([r.ours_seconds for r in rows])
    t_clever = _mean([r.clever_seconds for r in rows])
    if t_clever:
        report.headlines.append(f"Full bracket per input {t_clever / t_ours:.1f}x faster than ART's CLEVER "
                                f"(digits MLP, L-inf).")
    e_ours = _mean([abs(r.estimate - r.exact) for r in rows if r.exact is not None and r.estimate is not None])
    e_clever = _mean([abs(r.clever - r.exact) for r in rows if r.exact is not None and r.clever is not None])
    e_pgd = _mean([abs(r.pgd - r.exact) for r in rows if r.exact is not None and r.pgd is not None])
    e_upper = _mean([abs(r.upper - r.exact) for r in rows if r.exact is not None and r.upper is not None])
    report.headlines.append(f"Mean error vs the exact L-inf radius (MILP): estimate {fmt(e_ours)}, witness bound "
                            f"{fmt(e_upper)}, CLEVER {fmt(e_clever)}, PGD {fmt(e_pgd)}.")
    judged = [r for r in rows if r.exact is not None and r.estimate is not None]
    above = sum(r.estimate > r.exact * (1 + 1e-6) for r in judged)
    if judged:
        report.headlines.append(f"The paper's estimate lay above the exact radius on {above}/{len(judged)} inputs "
                                f"({above / len(judged):.0%}): an estimate, not a guarantee.")
    relative = _relative_widths(rows)
    if relative:
        report.headlines.append(f"Certified bracket [lower, upper] on {len(relative)}/{len(rows)} inputs, mean relative "
                                f"width {fmt(_mean(relative))} (upper - lower) / upper.")
    return report
