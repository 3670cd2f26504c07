"""Search throughput: forward evaluations per second of the batched pattern search (GPS, every
poll point of every start in one forward pass, chunked at the default chunk size) against a raw
batched forward pass of the same model on batches of the same sizes."""

from __future__ import annotations

import re
import statistics

import numpy as np
import torch

from benchmarks.common import BenchReport, Goal, Table, load_onnx_model, shared_path, timer

NAME = "throughput"
GOAL_RATIO = 0.8


def vnnlib_centre(path) -> np.ndarray:
    """Centre of the input box of a VNN-LIB file (X_i bounds from `(assert (<= X_i v))` lines)."""
    lower, upper = {}, {}
    for op, name, value in re.findall(r"\(assert\s+\((<=|>=)\s+X_(\d+)\s+([-+0-9.eE]+)\)\)", path.read_text()):
        (upper if op == "<=" else lower)[int(name)] = float(value)
    n = max(lower) + 1
    return np.array([(lower[i] + upper[i]) / 2 for i in range(n)])


def run(quick: bool = False) -> BenchReport:
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.search import Evaluator, Region, SearchConfig, pattern_search
    from saferisk.search.witness import value_objective

    model_path = shared_path("vnncomp", "mnistfc", "mnist-net_256x2.onnx")
    model = load_onnx_model(model_path, name="mnist-net_256x2")
    x0 = torch.as_tensor(vnnlib_centre(shared_path("vnncomp", "mnistfc", "prop_0_0.03.vnnlib")), dtype=torch.float32)
    domain = Domain.scalar(0.0, 1.0, model.n_inputs)
    prop = Robustness().bind(model.forward_flat(x0[None])[0].double())
    config = SearchConfig(mode="gps", n_starts=8, max_iterations=8 if quick else 30, mesh_tolerance=1e-12,
                          budget=10**9)
    region = Region(x0, 0.03, "inf", domain.lower.float(), domain.upper.float())
    starts = region.sample(config.n_starts, torch.Generator().manual_seed(0))

    batch_sizes: list[int] = []
    table = Table("Forward evaluations per second: GPS poll vs raw batched forward (mnist-net_256x2, 784 inputs)",
                  ["torch threads", "chunk size", "poll points / iteration", "search evals/s", "raw forward evals/s",
                   "search / raw", "iterations"])
    ratios = []
    for repeat in range(1 if quick else 3):
        evaluator = Evaluator(model, prop.value, config.chunk_size, config.budget)
        evaluator.observers.append(lambda x, w: batch_sizes.append(int(x.shape[0])) if repeat == 0 else None)
        objective = value_objective(prop, evaluator)
        objective(starts)  # warm-up outside the timing
        evaluator.evaluations = 0
        with timer() as t_search:
            res = pattern_search(objective, starts, region, config, evaluator, torch.Generator().manual_seed(0))
        search_rate = evaluator.evaluations / t_search[0]
        sizes = batch_sizes[1:]  # the same batches (sizes) as the search sent to the model
        gen = torch.Generator().manual_seed(1)
        batches = [torch.rand(b, model.n_inputs, generator=gen) for b in sorted(set(sizes))]
        by_size = {int(b.shape[0]): b for b in batches}
        with timer() as t_raw:
            for b in sizes:
                model.forward_flat(by_size[b])
        raw_rate = sum(sizes) / t_raw[0]
        ratios.append(search_rate / raw_rate)
        table.add(torch.get_num_threads(), config.chunk_size, 2 * model.n_inputs * config.n_starts, search_rate,
                  raw_rate, search_rate / raw_rate, res.iterations)
    ratio = statistics.median(ratios)  # the machine may be shared: the median of the repeats
    table.notes.append("Search = `saferisk.search.pattern_search` on the robustness margin in an L-inf ball of 0.03 around "
                       "the centre of VNN-COMP prop_0, 8 starts, every poll point of all starts in one batched pass "
                       "(chunks of 8192). Raw = `Model.forward_flat` on the same batch sizes (random inputs), timed right after "
                       "each search; the goal uses the median ratio over the repeats.")
    report = BenchReport(NAME, "Search throughput vs raw forward passes", quick=quick, tables=[table])
    report.goals.append(Goal(f"search throughput >= {GOAL_RATIO:.0%} of a raw batched forward pass",
                             f"{ratio:.0%}", ratio >= GOAL_RATIO))
    report.headlines.append(f"Pattern search runs at {ratio:.0%} of the raw forward-pass throughput "
                            f"(mnist-net_256x2, CPU).")
    return report
