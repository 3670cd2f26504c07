"""Which rows of an input set an audit uses: the first N, explicit indices, or N per class.

Each rule is a function of (number of rows, labels, seed) -> positions, so the config layer
can choose rows without reading them, and `select` applies the same rule to a loaded set."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from saferisk.data.inputs import InputSet
from saferisk.errors import DataError

RULES = ("first", "indices", "per_class")


def first_positions(n_rows: int, n: int) -> list[int]:
    if n < 1:
        raise DataError(f"select first: n must be >= 1, got {n}")
    return list(range(min(int(n), n_rows)))


def index_positions(n_rows: int, indices: Sequence[int]) -> list[int]:
    """Explicit positions (0-based, in the given order, no repeats)."""
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < n_rows]
    if bad:
        raise DataError(f"index {bad[0]} is out of range for {n_rows} rows; all indices out of range: {bad[:5]}")
    if len(set(idx)) != len(idx):
        raise DataError("repeated indices in the selection")
    return idx


def stratified_positions(labels: np.ndarray | None, per_class: int, seed: int = 0) -> list[int]:
    """Up to `per_class` rows of each label, drawn with `seed`; rows keep file order."""
    if labels is None:
        raise DataError("the input set has no labels; stratified selection (per_class) needs them")
    if per_class < 1:
        raise DataError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = rows if rows.size <= per_class else rng.choice(rows, size=per_class, replace=False)
        chosen.extend(int(r) for r in take)
    return sorted(chosen)


def selected_positions(n_rows: int, selection: dict[str, Any] | None, labels=None, seed: int = 0) -> list[int]:
    """The positions a selection {first | indices | per_class: ...} keeps (all rows when empty).

    `labels` may be a callable returning them (read only when per_class needs them). A
    DataError's message starts with the rule it concerns ('indices: ...')."""
    given = [k for k in RULES if (selection or {}).get(k) is not None]
    if len(given) > 1:
        raise DataError(f"choose one selection, got {' and '.join(given)}")
    if not given:
        return list(range(n_rows))
    rule, value = given[0], selection[given[0]]
    try:
        if rule == "first":
            return first_positions(n_rows, int(value))
        if rule == "indices":
            return index_positions(n_rows, value)
        return stratified_positions(labels() if callable(labels) else labels, int(value), seed)
    except DataError as exc:
        raise DataError(f"{rule}: {exc}") from None


def select(input_set: InputSet, *, first: int | None = None, indices: Sequence[int] | None = None,
           per_class: int | None = None, seed: int = 0) -> InputSet:
    """At most one of first / indices / per_class (none: the whole set)."""
    try:
        positions = selected_positions(len(input_set), {"first": first, "indices": indices, "per_class": per_class},
                                       input_set.labels, seed)
    except DataError as exc:
        raise DataError(f"input set '{input_set.name}', selection {exc}") from None
    return input_set.subset(positions)
