"""Input steps: one shard .npz of a configured input set, and the set's manifest."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

from saferisk.data.inputs import load_npz_input_set, save_npz
from saferisk.data.spec import InputSetSpec, load
from saferisk.io import atomic_write_json, sha256_file

log = logging.getLogger("saferisk.steps")


def prepare_input_shard(name: str, spec: dict[str, Any], seeds: dict[str, int], positions: Sequence[int],
                        fingerprint: str, out_path: str, base: str = ".") -> int:
    """Write the rows at source `positions` (box: 0 = centre, i = sample i) as one shard .npz;
    `fingerprint` (of those rows, computed when the plan was made) is re-checked, so data
    changed after parsing is an error rather than a silently different shard."""
    entry = {**spec, "selection": None}
    if spec.get("box") is not None:
        entry["samples"] = max(positions) if positions else 0
    input_spec = InputSetSpec.from_config(name, entry, Path(base), seeds)
    shard = load(input_spec, positions, expected_fingerprint=fingerprint)
    save_npz(shard, out_path)
    log.info("input set %s: %d rows (ids %s..%s) -> %s", name, len(shard), shard.ids[0], shard.ids[-1], out_path)
    return len(shard)


def describe_input_set(name: str, shard_paths: Sequence[str], out_path: str) -> dict[str, Any]:
    """manifest.json of a prepared input set: rows, features, label presence, shard hashes."""
    shards = []
    n_rows = 0
    n_features = None
    has_labels = False
    for path in shard_paths:
        data = load_npz_input_set(path)
        n_rows += len(data)
        n_features = data.n_features
        has_labels = has_labels or data.labels is not None
        shards.append({"file": Path(path).name, "rows": len(data), "sha256": sha256_file(path),
                       "first_id": data.ids[0], "last_id": data.ids[-1]})
    manifest = {"input_set": name, "rows": n_rows, "features": n_features, "labels": has_labels, "shards": shards}
    atomic_write_json(out_path, manifest)
    return manifest


def input_set_digest(manifest: dict) -> str:
    """One SHA-256 naming an input set's content: its single shard's hash, or the hash of its
    shards' hashes (one per line, in shard order) when it has several."""
    hashes = [str(s.get("sha256", "")) for s in manifest.get("shards", [])]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
