"""What every input-set reader provides: a cheap look and a full read of chosen rows.

A `Source` is one opened data source. Opening it is cheap (no pixel decoding, no float
conversion of every row): `n_rows`, `n_features`, `labels()` (for stratified selection),
`row_digests(positions)` (the per-row fingerprints that decide which shard jobs rerun) and
`check_rows(positions)` (value checks made when the config is read). `read(positions)`
returns the rows at those source positions (all rows when None) as an `InputSet`.
Every reader raises `DataError` naming the file; the config layer adds the config key.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.inputs import InputSet
from saferisk.errors import DataError


@dataclass(frozen=True)
class ReadOptions:
    """How to read a source: the labels (npz array, csv column, or a png folder's labels csv),
    the npz inputs array, the csv id column, the png colour mode and the set's name."""

    labels: str | None = None
    x_key: str | None = None
    id_column: str | None = None
    color: str = "auto"
    name: str | None = None


class Source(ABC):
    """One opened input-set source (see the module docstring)."""

    path: Path
    n_rows: int
    n_features: int | None
    has_labels: bool

    def labels(self) -> np.ndarray | None:
        """Integer labels of every source row (None when the source has none)."""
        return None

    @abstractmethod
    def row_digests(self, positions: Sequence[int]) -> list[str]:
        """One fingerprint per row at `positions` (content and label)."""

    def check_rows(self, positions: Sequence[int]) -> None:
        """DataError when a row at `positions` is not a valid input (default: nothing cheap to check)."""

    @abstractmethod
    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        """The rows at `positions` (all when None), ids = their source row names."""


def digest(*parts: bytes) -> str:
    """sha256 hex over the concatenated parts."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def require_file(path: Path, what: str = "input set") -> Path:
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} path is not a file: {path}")
    return path


def all_positions(positions: Sequence[int] | None, n_rows: int) -> list[int]:
    """`positions` as ints (every row when None), each checked against `n_rows`."""
    if positions is None:
        return list(range(n_rows))
    out = [int(p) for p in positions]
    bad = [p for p in out if not 0 <= p < n_rows]
    if bad:
        raise DataError(f"the source has {n_rows} rows; row {bad[0]} is out of range (did the data change?)")
    return out


def integer_labels(values: np.ndarray, source: str, key: str) -> np.ndarray:
    """Labels as int64; DataError when they are not whole numbers."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not np.all(values == np.round(values)):
            raise DataError(f"{source}: labels '{key}' must be integers")
    elif values.dtype.kind not in "biu":
        raise DataError(f"{source}: labels '{key}' must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)
