"""Input sets: the inputs x0 an audit measures radii around.

An `InputSet` holds N inputs as flat float64 rows X (N, n) in the model's input order
(C, H, W for images), with optional labels, stable ids (the row index in the source file as a
string), feature names (CSV) or the per-sample image shape, an optional input domain, and
where it came from (path + sha256).

Here: the `InputSet` type, `check_finite`, `validate` against a model (element count,
NaN/inf, domain with 1e-6 tolerance and clipping) and the deterministic `.npz` file of a
prepared shard (`save_npz` / `load_npz_input_set`: same set, same bytes). Reading source data
is saferisk.data.spec (`describe`, `load`) with one reader per format in saferisk.data.formats.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.domain import Domain
from saferisk.errors import DataError
from saferisk.io import atomic_write, npz_bytes as npz_of_arrays

_NPZ_FORMAT = "saferisk-inputs-1"
SAVED_KEY = "__saferisk__"  # the metadata member of a saved set


@dataclass
class InputSet:
    """N inputs as flat float64 rows X (N, n); ids are stable across selection and sharding."""

    name: str
    X: np.ndarray
    labels: np.ndarray | None = None
    ids: list[str] = dataclasses.field(default_factory=list)
    feature_names: list[str] | None = None
    image_shape: tuple[int, ...] | None = None
    domain: Domain | None = None
    source: str = ""
    sha256: str = ""
    box_lower: np.ndarray | None = None  # (n,) for a box input set (reachability over a region)
    box_upper: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=np.float64)
        if self.X.ndim != 2:
            raise DataError(f"input set '{self.name}': X must be (N, n), got shape {self.X.shape}")
        if not self.ids:
            self.ids = [str(i) for i in range(self.X.shape[0])]
        self.ids = [str(i) for i in self.ids]
        if len(self.ids) != self.X.shape[0]:
            raise DataError(f"input set '{self.name}': {len(self.ids)} ids for {self.X.shape[0]} rows")
        if len(set(self.ids)) != len(self.ids):
            raise DataError(f"input set '{self.name}': ids are not unique")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).reshape(-1).astype(np.int64)
            if self.labels.shape[0] != self.X.shape[0]:
                raise DataError(f"input set '{self.name}': {self.labels.shape[0]} labels for {self.X.shape[0]} rows")
        if self.image_shape is not None:
            self.image_shape = tuple(int(d) for d in self.image_shape)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def is_box(self) -> bool:
        return self.box_lower is not None

    def subset(self, positions: Sequence[int], name: str | None = None) -> "InputSet":
        """The rows at `positions` (in that order), keeping ids, labels and metadata."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        return dataclasses.replace(
            self, name=name or self.name, X=self.X[pos].copy(),
            labels=None if self.labels is None else self.labels[pos].copy(),
            ids=[self.ids[int(p)] for p in pos])

    def tensor(self, dtype=None):
        """The rows as a torch tensor (float64 unless `dtype`)."""
        import torch

        return torch.as_tensor(self.X, dtype=torch.float64 if dtype is None else dtype)


# ----------------------------------------------------------------------------- helpers

def check_finite(X: np.ndarray, source: str, ids: Sequence[str] | None = None) -> None:
    """DataError naming the file and the first row with NaN or inf."""
    bad_rows = ~np.isfinite(X).reshape(X.shape[0], -1).all(axis=1)
    if bad_rows.any():
        row = int(np.flatnonzero(bad_rows)[0])
        col = int(np.flatnonzero(~np.isfinite(X.reshape(X.shape[0], -1)[row]))[0])
        row_name = ids[row] if ids is not None else str(row)
        value = X.reshape(X.shape[0], -1)[row, col]
        raise DataError(f"{source}: row {row_name} feature {col} is {value} (NaN/inf is not a valid input)")


# ----------------------------------------------------------------------------- validation

def validate(input_set: InputSet, n_inputs: int, input_shape: Sequence[int] | None = None,
             domain: Domain | None = None) -> InputSet:
    """Check the set against a model: n_inputs elements per row (a single sample saved without
    its batch axis is accepted), finite values, inside `domain` (or the set's own) within
    1e-6 (then clipped). Returns the validated set (X clipped, image_shape = input_shape)."""
    where = input_set.source or input_set.name
    X = input_set.X
    if X.shape[1] != n_inputs:
        if X.size == n_inputs:  # one sample stored without a batch axis, e.g. (8, 8) for (1, 8, 8)
            X = X.reshape(1, n_inputs)
            input_set = dataclasses.replace(input_set, X=X, ids=["0"], labels=input_set.labels[:1] if
                                            input_set.labels is not None and input_set.labels.size == 1 else None)
        else:
            shape = input_set.image_shape or (X.shape[1],)
            raise DataError(f"{where}: each input has {X.shape[1]} elements (shape {tuple(shape)}), "
                            f"the model takes {n_inputs}" + (f" (shape {tuple(input_shape)})" if input_shape else ""))
    check_finite(input_set.X, where, input_set.ids)
    domain = domain if domain is not None else input_set.domain
    X = input_set.X
    if domain is not None:
        if domain.n != n_inputs:
            raise DataError(f"{where}: the domain has {domain.n} features, the model takes {n_inputs}")
        try:
            X = domain.clip_rows(X)
        except DataError:
            for row in range(X.shape[0]):  # name the row by its id (error path only)
                try:
                    domain.clip_rows(X[row:row + 1], what="input")
                except DataError as exc:
                    detail = str(exc).split("row 0 ", 1)[-1]
                    raise DataError(f"{where}: row {input_set.ids[row]} {detail}") from None
            raise
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else input_set.image_shape
    if shape is not None and int(np.prod(shape)) != n_inputs:
        shape = input_set.image_shape
    return dataclasses.replace(input_set, X=np.ascontiguousarray(X), domain=domain, image_shape=shape)


# ----------------------------------------------------------------------------- npz round trip

def _arrays_for_save(input_set: InputSet) -> list[tuple[str, np.ndarray]]:
    meta = {"format": _NPZ_FORMAT, "name": input_set.name, "source": input_set.source,
            "sha256": input_set.sha256, "feature_names": input_set.feature_names,
            "image_shape": None if input_set.image_shape is None else list(input_set.image_shape)}
    arrays = [(SAVED_KEY, np.asarray([json.dumps(meta, sort_keys=True)])),
              ("X", input_set.X.astype("<f8")),
              ("ids", np.asarray(input_set.ids, dtype=str).reshape(-1))]
    if input_set.labels is not None:
        arrays.append(("labels", input_set.labels.astype("<i8")))
    if input_set.domain is not None:
        arrays.append(("domain_lower", input_set.domain.lower_array.astype("<f8")))
        arrays.append(("domain_upper", input_set.domain.upper_array.astype("<f8")))
    if input_set.box_lower is not None:
        arrays.append(("box_lower", np.asarray(input_set.box_lower, dtype="<f8")))
        arrays.append(("box_upper", np.asarray(input_set.box_upper, dtype="<f8")))
    return arrays


def npz_bytes(input_set: InputSet) -> bytes:
    """The `.npz` archive of a set: fixed member order and zip timestamps (byte-stable)."""
    return npz_of_arrays(_arrays_for_save(input_set))


def save_npz(input_set: InputSet, path: str | os.PathLike) -> None:
    """Write the set (rows, labels, ids, domain, box, metadata) atomically to `path`."""
    data = npz_bytes(input_set)

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, _write)


def from_saved_arrays(arrays: dict[str, np.ndarray], path: Path, name: str | None = None) -> InputSet:
    """The set held by the arrays of a `save_npz` file."""
    try:
        meta = json.loads(str(arrays[SAVED_KEY].reshape(-1)[0]))
        if meta.get("format") != _NPZ_FORMAT:
            raise DataError(f"{path}: unknown saferisk input set format {meta.get('format')!r}")
        domain = None
        if "domain_lower" in arrays:
            domain = Domain.from_bounds(arrays["domain_lower"], arrays["domain_upper"], arrays["domain_lower"].size)
        X = arrays["X"]
        check_finite(X, str(path))
        return InputSet(name or meta["name"], X, labels=arrays.get("labels"),
                        ids=[str(i) for i in arrays["ids"]], feature_names=meta.get("feature_names"),
                        image_shape=meta.get("image_shape"), domain=domain, source=meta.get("source", ""),
                        sha256=meta.get("sha256", ""), box_lower=arrays.get("box_lower"),
                        box_upper=arrays.get("box_upper"))
    except (KeyError, IndexError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: corrupt saferisk input set ({exc})") from None


def load_npz_input_set(path: str | os.PathLike) -> InputSet:
    """Load a set written by `save_npz` (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input set file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if SAVED_KEY not in arrays:
        raise DataError(f"{path}: not a saferisk input set file (no {SAVED_KEY} member)")
    return from_saved_arrays(arrays, path)
