"""The witness file: the one place that knows how witnesses are saved and read back.

One .npz per radius job (np.savez, keys in sorted order) holding flat float64 rows
"<key>/x0" (the centre the witness was searched around: the input, or for invariance the
differently labelled reference input) and "<key>/witness" (the violating input). A result
points at its rows with witness_ref = "<path of the .npz, relative to a root>#<key>".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saferisk.io import atomic_write

REF_SEPARATOR = "#"


def x0_key(key: str) -> str:
    return f"{key}/x0"


def witness_key(key: str) -> str:
    return f"{key}/witness"


def format_ref(prefix: str, key: str) -> str:
    """The reference a result records: '<prefix>#<key>'."""
    return f"{prefix}{REF_SEPARATOR}{key}"


def split_ref(ref: str) -> tuple[str, str]:
    """(relative path, key) of a witness reference; KeyError when it has no '#<key>'."""
    if REF_SEPARATOR not in ref:
        raise KeyError(f"witness reference {ref!r} lacks '{REF_SEPARATOR}<key>'")
    rel, key = ref.rsplit(REF_SEPARATOR, 1)
    return rel, key


@dataclass
class WitnessStore:
    """Witnesses of one batch of results, saved together as one .npz (keys '<id>/x0', '<id>/witness')."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, key: str, x0: np.ndarray, witness: np.ndarray) -> None:
        """Keep the pair under `key` as flat float64 rows."""
        self.arrays[x0_key(key)] = np.asarray(x0, dtype=np.float64).reshape(-1)
        self.arrays[witness_key(key)] = np.asarray(witness, dtype=np.float64).reshape(-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write every pair to `path` (see save_witnesses)."""
        save_witnesses(path, self.arrays)


def save_witnesses(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write witness rows {'<key>/x0' | '<key>/witness': flat float64 array} to `path`
    atomically: np.savez with the keys in sorted order (the same bytes for the same rows)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: arrays[k] for k in sorted(arrays)})
    atomic_write(path, write)


def load_witness(witnesses_root: str | os.PathLike | None, witness_ref: str) -> tuple[np.ndarray, np.ndarray]:
    """(x0, witness) flat float arrays of `witness_ref` (its path relative to `witnesses_root`,
    default the working directory); raises FileNotFoundError / KeyError naming the reference."""
    rel, key = split_ref(witness_ref)
    path = Path(witnesses_root or ".") / rel
    if not path.exists():
        raise FileNotFoundError(f"witness file {path} not found")
    with np.load(path, allow_pickle=False) as data:
        for name in (x0_key(key), witness_key(key)):
            if name not in data:
                raise KeyError(f"{path} has no array {name!r}")
        return np.asarray(data[x0_key(key)], dtype=float).ravel(), np.asarray(data[witness_key(key)], dtype=float).ravel()
