"""What the two numpy readers (npy, npz) share: an (N, ...) array of rows, optional labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.formats.base import Source, all_positions, digest
from saferisk.data.inputs import InputSet, check_finite
from saferisk.errors import DataError
from saferisk.io import sha256_file


class ArraySource(Source):
    """Rows of a numeric array (N, ...) (one sample saved without its batch axis: (n,) is one row)."""

    def __init__(self, path: Path, array: np.ndarray, labels: np.ndarray | None, name: str | None) -> None:
        if array.dtype.kind not in "biuf":
            raise DataError(f"{path}: the inputs are not numbers (array dtype {array.dtype})")
        if array.ndim == 0:
            raise DataError(f"{path}: expected an array of rows, got a scalar")
        if array.size == 0:
            raise DataError(f"{path}: holds no inputs (array of shape {array.shape})")
        self.path = path
        self.rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
        self.row_shape = tuple(int(d) for d in array.shape[1:]) if array.ndim > 2 else None
        self.n_rows = int(self.rows.shape[0])
        self.n_features = int(math.prod(array.shape[1:])) if array.ndim > 1 else int(array.size)
        self._labels = labels
        self.has_labels = labels is not None
        self.name = name or path.stem
        if labels is not None and labels.shape[0] != self.n_rows:
            raise DataError(f"{path}: {labels.shape[0]} labels in '{self.label_key}' for {self.n_rows} inputs "
                            f"in '{self.x_key}'")

    label_key = "labels"
    x_key = "X"

    def labels(self) -> np.ndarray | None:
        return self._labels

    def row_digests(self, positions: Sequence[int]) -> list[str]:
        """sha256 of the row's bytes as stored (and of its label)."""
        return [digest(np.ascontiguousarray(self.rows[p]).tobytes(),
                       b"" if self._labels is None else str(int(self._labels[p])).encode()) for p in positions]

    def check_rows(self, positions: Sequence[int]) -> None:
        positions = list(positions)
        check_finite(np.asarray(self.rows[positions], dtype=np.float64), str(self.path), [str(p) for p in positions])

    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        pos = all_positions(positions, self.n_rows)
        ids = [str(p) for p in pos]
        X = np.asarray(self.rows[pos], dtype=np.float64)
        check_finite(X, str(self.path), ids)
        labels = None if self._labels is None else self._labels[pos]
        return InputSet(self.name, X, labels=labels, ids=ids, image_shape=self.row_shape, source=str(self.path),
                        sha256=sha256_file(self.path))
