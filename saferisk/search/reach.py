"""Reachable range [min o, max o] of a scalar output o(x) = a . f(x) over a box.

Multi-start pattern search (minimise o and -o) from the best of random samples, the box
centre and (for n <= 8) its corners, plus gradient-guided starts: plain GPS from one start
gets stuck (ReLU-NN-5's minimum, method.md §5).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import torch

from saferisk.data.domain import Domain
from saferisk.errors import ModelError
from saferisk.properties.reachability import output_weights
from saferisk.search.config import SearchConfig
from saferisk.search.gps import pattern_search
from saferisk.search.gradient import gradient_descent
from saferisk.search.region import Evaluator, Region


@dataclass
class ReachResult:
    min: float
    max: float
    argmin: list[float]
    argmax: list[float]
    evaluations: int
    seconds: float

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max, "argmin": self.argmin, "argmax": self.argmax,
                "evaluations": self.evaluations, "seconds": self.seconds}


def box_region(lower: torch.Tensor, upper: torch.Tensor) -> Region:
    """A box as an L-inf ball of radius 1 in units of its half-widths."""
    centre = (lower + upper) / 2
    unit = ((upper - lower) / 2).clamp_min(1e-30)
    return Region(centre, 1.0, "inf", lower, upper, unit)


def reachable_range(model, output, lower, upper, config: SearchConfig | None = None, seed: int = 0) -> ReachResult:
    """[min, max] of a . f(x) over the box [lower, upper] (output: index or weights)."""
    config = config or SearchConfig(mode="gps", mesh_tolerance=1e-6, n_starts=8, n_random=1024)
    dtype, device = model.dtype, model.device
    lo = torch.as_tensor(lower, dtype=dtype).reshape(-1).to(device)
    hi = torch.as_tensor(upper, dtype=dtype).reshape(-1).to(device)
    Domain.from_bounds(lo.double().cpu(), hi.double().cpu(), model.n_inputs)  # checks shapes, lo <= hi
    start_time = time.perf_counter()
    region = box_region(lo, hi)
    generator = torch.Generator().manual_seed(int(seed))
    n = region.n
    candidates = [region.sample(config.n_random, generator), region.x0.unsqueeze(0)]
    if n <= 8:
        corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype, device=device)
        candidates.append(lo + corners * (hi - lo))
    samples = torch.cat(candidates)
    m = int(model.forward_flat(samples[:1]).shape[1])
    a = torch.tensor(output_weights(output, m), dtype=dtype, device=device)
    evaluator = Evaluator(model, lambda z: z @ a, config.chunk_size, config.budget)
    outputs = evaluator(samples)
    bad = ~torch.isfinite(outputs)
    if bool(bad.any()):  # a range over NaN is meaningless: say where instead of printing nan
        at = samples[int(bad.nonzero()[0])].double().cpu().tolist()
        raise ModelError(f"the model gives NaN or infinite outputs inside the box, e.g. at {at}")
    # the minimum (+1) and the maximum (-1) are searched together: one batched pass per poll
    starts, signs = [], []
    for sign in (1.0, -1.0):
        best = samples[torch.nan_to_num(sign * outputs, nan=float("inf")).argsort()[: config.n_starts]]
        starts.append(best)
        signs += [sign] * best.shape[0]
        if config.gradient_starts:
            objective = lambda x, sign=sign: sign * evaluator.with_grad(x)
            gx, _ = gradient_descent(objective, best, region, config.gradient_steps, evaluator,
                                     step_fraction=0.2 / max(config.gradient_steps, 1))
            starts.append(gx)
            signs += [sign] * gx.shape[0]
    signs_t = torch.tensor(signs, dtype=dtype, device=device)
    res = pattern_search(evaluator, torch.cat(starts), region, config, evaluator, generator, weights=signs_t)
    results = []
    for sign in (1.0, -1.0):
        mine = (signs_t == sign).nonzero().flatten()
        values = torch.nan_to_num(res.value[mine], nan=float("inf"))
        x_best = res.x[mine[int(values.argmin())]]
        sample_values = torch.nan_to_num(sign * outputs, nan=float("inf"))
        if float(values.min()) > float(sample_values.min()):  # a sample beat every search path
            x_best = samples[int(sample_values.argmin())]
        o = float(model.forward_flat(x_best.unsqueeze(0))[0].to(dtype) @ a)  # fresh re-check
        if not math.isfinite(o):
            raise ModelError(f"the model gives a NaN or infinite output inside the box at {x_best.double().cpu().tolist()}")
        results.append((o, x_best.double().cpu().tolist()))
    (o_min, x_min), (o_max, x_max) = results
    return ReachResult(o_min, o_max, x_min, x_max, evaluator.evaluations, time.perf_counter() - start_time)
