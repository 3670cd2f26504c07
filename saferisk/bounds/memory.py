"""How much memory certification needs for a network, estimated from its graph (no bound pass).

The engine keeps to `engine.memory_bytes` in two ways (engine.py, forward.py): the CROWN
intermediate bounds of a node run in passes of `rows_per_pass` neurons (the same bounds; more
passes spend more of the work budget), and forward linear bounds replace them on large networks
only where `forward.forward_bytes` fits. The NEED of a network is the memory above which
neither limit bites for the radius search: every node's CROWN rows (at most
`crown_max_neurons` of them, for a batch of `grid_size` radii, or of the input-splitting batch
on low-dimensional inputs) in one pass, and the forward bounds wherever the engine would use
them. Within less memory the results are still sound, and the same on every machine for the
same budget; they may be looser (the budget is recorded per input, extra.certify_memory_mb).

`certify.memory_mb: auto` (the default) uses min(need, AUTO_CEILING_MB); a radius job asks the
scheduler for that plus the rest of the job (saferisk.config.runtime.radius_job_mem_mb), from
the profile the export step writes into the model's manifest (`certify_memory`,
saferisk.steps.export), the same numbers the engine's own profile gives at certification time,
and keeps to less where the scheduler granted less (CertifyConfig.memory_limit_mb).
"""

from __future__ import annotations

import math
from typing import Any

from saferisk.bounds.footprint import FORWARD_MIN_ENTRIES, LIVE_FACTOR, ROW_BYTES_FACTOR

AUTO_CEILING_MB = 8192  # auto never asks for more certification memory than this (MiB)
AUTO_FLOOR_MB = 64  # ... nor less (a tiny network's rows, plus room for the tensors around them)
INPUT_SPLIT_MIN_BATCH = 256  # bab.branch_and_bound bounds at least this many input sub-boxes at once
FLOAT_BYTES = 8  # the engine computes in float64


def profile(engine) -> dict[str, Any]:
    """The graph quantities the need depends on (plain JSON: the manifest stores it).

    nodes: one [neurons, largest node up to it, signs] per node whose CROWN bounds the engine
    computes (the inputs of nonlinear ops; signs 1 where the node is affine in the input, one
    row per neuron, else 2: lower and upper)."""
    from saferisk.bounds.forward import forward_entries, forward_supported

    nodes = [[math.prod(engine.shapes[name]), int(engine.max_numel_upto[name]), 1 if name in engine.affine_only else 2]
             for name in engine.pre_nodes if name != engine.input_name]
    return {"n_inputs": int(engine.n_inputs), "relu_neurons": int(engine.relu_neurons),
            "forward_supported": bool(forward_supported(engine)),
            "forward_entries": int(forward_entries(engine)), "nodes": nodes}


def graph_profile(graph) -> dict[str, Any] | None:
    """profile() of a saferisk Graph (the export's; built on the CPU), None when certified bounds
    do not support it (nothing to budget)."""
    from saferisk.bounds.engine import BoundEngine, UnsupportedGraph

    try:
        return profile(BoundEngine(graph, "cpu"))
    except UnsupportedGraph:
        return None


def _batch(prof: dict[str, Any], config) -> int:
    """Input sets bounded together: the radius grid, or branch and bound's input-splitting
    batch on inputs of at most input_split_max_dim features."""
    batch = int(config.grid_size)
    if "bab" in config.ladder() and prof["n_inputs"] <= int(config.input_split_max_dim):
        batch = max(batch, int(config.bab_batch), INPUT_SPLIT_MIN_BATCH)
    return max(1, batch)


def crown_bytes(prof: dict[str, Any], config) -> int:
    """Memory of the largest one-pass CROWN intermediate bound (engine.rows_per_pass)."""
    cap = config.crown_max_neurons
    batch = _batch(prof, config)
    need = 0
    for neurons, upto, signs in prof["nodes"]:
        rows = neurons if cap is None else min(neurons, int(cap))  # more: the node keeps its IBP bounds
        need = max(need, rows * batch * signs * upto * FLOAT_BYTES * ROW_BYTES_FACTOR)
    return need


def forward_bytes(prof: dict[str, Any], config) -> int:
    """Memory of forward linear bounds where the engine would use them (engine.forward_is_cheaper
    once they fit), else 0."""
    cap = config.crown_max_neurons
    if (cap is None or prof["relu_neurons"] <= int(cap) or not prof["forward_supported"]
            or prof["forward_entries"] < FORWARD_MIN_ENTRIES):
        return 0
    return prof["forward_entries"] * FLOAT_BYTES * LIVE_FACTOR


def need_mb(prof: dict[str, Any] | None, config) -> int:
    """MiB within which nothing of the radius search is chunked or replaced (module docstring);
    AUTO_FLOOR_MB for a graph certified bounds do not support (prof None)."""
    if prof is None:
        return AUTO_FLOOR_MB
    need = max(crown_bytes(prof, config), forward_bytes(prof, config))
    return max(AUTO_FLOOR_MB, -(-need // (1 << 20)))


def auto_mb(prof: dict[str, Any] | None, config) -> int:
    """The certification memory of `memory_mb: auto`: the need, at most AUTO_CEILING_MB."""
    return min(need_mb(prof, config), AUTO_CEILING_MB)
