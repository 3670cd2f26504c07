"""`.npy` input sets: one array of rows (N, n) or per-sample shaped (N, *shape); no labels.

The array is memory-mapped: describing a large file reads only the rows it fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saferisk.data.formats.arrays import ArraySource
from saferisk.data.formats.base import ReadOptions, require_file
from saferisk.errors import DataError


class NpySource(ArraySource):
    def __init__(self, path: Path, options: ReadOptions = ReadOptions()) -> None:
        require_file(path)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        super().__init__(path, array, None, options.name)
