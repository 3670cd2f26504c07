"""Shards: consecutive runs of at most `shard_size` selected rows, one radius job each, and
the fingerprint of a shard's rows (a job parameter: appending rows reruns only the new shard,
touching a file reruns nothing)."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from saferisk.errors import DataError


def shard_count(n_rows: int, shard_size: int) -> int:
    """ceil(n_rows / shard_size), at least 1."""
    if shard_size < 1:
        raise DataError(f"shard_size must be >= 1, got {shard_size}")
    return max(1, math.ceil(n_rows / shard_size))


def shard_range(k: int, n_rows: int, shard_size: int) -> tuple[int, int]:
    """[start, stop) positions of shard k among the selected rows."""
    start = k * shard_size
    return start, min(start + shard_size, n_rows)


def fingerprint(row_digests: Sequence[str]) -> str:
    """sha256 (16 hex) over the row digests, in order."""
    h = hashlib.sha256()
    for row_digest in row_digests:
        h.update(row_digest.encode())
    return h.hexdigest()[:16]
