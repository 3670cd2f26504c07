"""`.npz` input sets: inputs under `x_key` (default X, x or inputs), optional integer labels
under `labels` (default y, labels, label or Y). An archive written by `save_npz` (a prepared
shard) is read back with its ids, domain and metadata."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.formats.arrays import ArraySource
from saferisk.data.formats.base import ReadOptions, all_positions, integer_labels, require_file
from saferisk.data.inputs import SAVED_KEY, InputSet, from_saved_arrays
from saferisk.errors import DataError

X_KEYS = ("X", "x", "inputs")
LABEL_KEYS = ("y", "labels", "label", "Y")


def _pick_key(keys: Sequence[str], wanted: str | None, defaults: Sequence[str], path: Path, what: str) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise DataError(f"{path}: no array '{wanted}' ({what}); arrays present: {', '.join(sorted(keys))}")
        return wanted
    return next((key for key in defaults if key in keys), None)


class NpzSource(ArraySource):
    def __init__(self, path: Path, options: ReadOptions = ReadOptions()) -> None:
        require_file(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
        self._saved = None
        if SAVED_KEY in arrays and options.x_key is None and options.labels is None:
            self._saved = from_saved_arrays(arrays, path, options.name)
        key = _pick_key(list(arrays), options.x_key, X_KEYS, path, "inputs")
        if key is None:
            raise DataError(f"{path}: no inputs array (looked for {', '.join(X_KEYS)}); arrays present: "
                            f"{', '.join(sorted(arrays))}; set the key name")
        label_key = _pick_key(list(arrays), options.labels, LABEL_KEYS, path, "labels")
        labels = None if label_key is None else integer_labels(arrays[label_key], str(path), label_key)
        self.x_key, self.label_key = key, label_key
        super().__init__(path, np.asarray(arrays[key]), labels, options.name)

    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        if self._saved is None:
            return super().read(positions)
        if positions is None:
            return self._saved
        return self._saved.subset(all_positions(positions, len(self._saved)))
