"""Input sets: the inputs x0 an audit measures radii around.

An `InputSet` holds N inputs as flat float64 rows X (N, n) in the model's input order
(C, H, W for images), with optional labels, stable ids (the row index in the source file as a
string), feature names (CSV) or the per-sample image shape, an optional input domain, and
where it came from (path + sha256).

Loaders: `.npy`, `.npz`, `.csv`, a folder of PNG images, and a box (lower/upper per
feature; X holds the box centre). `load_input_set` picks one by the path. Then
`select` (first N / explicit indices / stratified per class), `validate` against a model
(element count, NaN/inf, domain with 1e-6 tolerance and clipping), `shard`, and a
deterministic `.npz` round trip (`save_npz` / `load_npz_input_set`): same set, same bytes.
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
import torch

from saferisk.data.domain import Domain
from saferisk.errors import DataError
from saferisk.io import atomic_write, sha256_file

X_KEYS = ("X", "x", "inputs")
LABEL_KEYS = ("y", "labels", "label", "Y")
IMAGE_SUFFIXES = (".png",)
# A fixed zip timestamp makes saved shards byte-identical run to run.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_NPZ_FORMAT = "saferisk-inputs-1"


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

    def tensor(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.as_tensor(self.X, dtype=dtype)


# ----------------------------------------------------------------------------- helpers

def _require_file(path: Path, what: str = "input set") -> Path:
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} path is not a file: {path}")
    return path


def check_finite(X: np.ndarray, source: str, ids: Sequence[str] | None = None) -> None:
    """DataError naming the file and the first row with NaN or inf."""
    bad_rows = ~np.isfinite(X).reshape(X.shape[0], -1).all(axis=1)
    if bad_rows.any():
        row = int(np.flatnonzero(bad_rows)[0])
        col = int(np.flatnonzero(~np.isfinite(X.reshape(X.shape[0], -1)[row]))[0])
        row_name = ids[row] if ids is not None else str(row)
        value = X.reshape(X.shape[0], -1)[row, col]
        raise DataError(f"{source}: row {row_name} feature {col} is {value} (NaN/inf is not a valid input)")


def _rows(array: np.ndarray, source: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """(N, ...) numeric array -> flat float64 rows (N, n) and the per-row shape if not flat."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim == 0:
        raise DataError(f"{source}: expected an array of rows, got a scalar")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.shape[0] == 0:
        raise DataError(f"{source}: the input set is empty")
    per_row = tuple(int(d) for d in array.shape[1:])
    X = array.reshape(array.shape[0], -1).astype(np.float64)
    check_finite(X, source)
    return X, (per_row if len(per_row) > 1 else None)


def _labels(values: np.ndarray, source: str, key: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not np.all(values == np.round(values)):
            raise DataError(f"{source}: labels '{key}' must be integers")
    elif values.dtype.kind not in "biu":
        raise DataError(f"{source}: labels '{key}' must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def _identity(path: Path) -> tuple[str, str]:
    return str(path), sha256_file(path)


# ----------------------------------------------------------------------------- loaders

def load_npy(path: str | os.PathLike, name: str | None = None) -> InputSet:
    """`.npy` array of rows (N, n) or per-sample shaped (N, *shape)."""
    path = _require_file(Path(path))
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    X, per_row = _rows(array, str(path))
    source, digest = _identity(path)
    return InputSet(name or path.stem, X, image_shape=per_row, source=source, sha256=digest)


def _pick_key(keys: Sequence[str], wanted: str | None, defaults: Sequence[str], path: Path, what: str) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise DataError(f"{path}: no array '{wanted}' ({what}); arrays present: {', '.join(sorted(keys))}")
        return wanted
    for key in defaults:
        if key in keys:
            return key
    return None


def load_npz(path: str | os.PathLike, x_key: str | None = None, label_key: str | None = None,
             name: str | None = None) -> InputSet:
    """`.npz` with inputs under `x_key` (default: X, x or inputs) and optional labels
    under `label_key` (default: y, labels, label or Y). Files written by `save_npz` load
    back with all their metadata."""
    path = _require_file(Path(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if "__saferisk__" in arrays and x_key is None and label_key is None:
        return _from_saved(arrays, path, name)
    key = _pick_key(list(arrays), x_key, X_KEYS, path, "inputs")
    if key is None:
        raise DataError(f"{path}: no inputs array (looked for {', '.join(X_KEYS)}); arrays present: "
                        f"{', '.join(sorted(arrays))}; set the key name")
    X, per_row = _rows(arrays[key], f"{path}[{key}]")
    lkey = _pick_key(list(arrays), label_key, LABEL_KEYS, path, "labels")
    labels = None if lkey is None else _labels(arrays[lkey], str(path), lkey)
    if labels is not None and labels.shape[0] != X.shape[0]:
        raise DataError(f"{path}: {labels.shape[0]} labels in '{lkey}' for {X.shape[0]} inputs in '{key}'")
    source, digest = _identity(path)
    return InputSet(name or path.stem, X, labels=labels, image_shape=per_row, source=source, sha256=digest)


def load_csv(path: str | os.PathLike, label_column: str | None = None, id_column: str | None = None,
             name: str | None = None) -> InputSet:
    """CSV with a header row: feature columns (names kept), optional label and id columns."""
    import pandas as pd

    path = _require_file(Path(path))
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column, what in ((label_column, "label"), (id_column, "id")):
        if column is not None and column not in frame.columns:
            raise DataError(f"{path}: no {what} column '{column}'; columns: {', '.join(frame.columns)}")
    if len(frame) == 0:
        raise DataError(f"{path}: the input set is empty")
    features = [c for c in frame.columns if c not in (label_column, id_column)]
    if not features:
        raise DataError(f"{path}: no feature columns")
    values = frame[features].apply(pd.to_numeric, errors="coerce")
    text_cells = values.isna() & frame[features].notna()
    if text_cells.to_numpy().any():
        row, col = (int(v[0]) for v in np.nonzero(text_cells.to_numpy()))
        raise DataError(f"{path}: row {row} column '{features[col]}' = {frame[features].iat[row, col]!r} is not a number")
    X = values.to_numpy(dtype=np.float64)
    ids = [str(i) for i in range(len(frame))]
    if id_column is not None:
        ids = [str(v) for v in frame[id_column]]
    check_finite(X, str(path), ids)
    labels = None
    if label_column is not None:
        raw = frame[label_column]
        if raw.isna().any():
            raise DataError(f"{path}: row {int(np.flatnonzero(raw.isna())[0])} has no label in column '{label_column}'")
        labels = _labels(pd.to_numeric(raw, errors="coerce").to_numpy(), str(path), label_column)
    source, digest = _identity(path)
    return InputSet(name or path.stem, X, labels=labels, ids=ids, feature_names=features,
                    source=source, sha256=digest)


def _read_image(path: Path, color: str) -> np.ndarray:
    """One image -> float64 (C, H, W) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if color == "grey":
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = np.asarray(image, dtype=np.float64) / 65535.0
                else:
                    array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
                return array[None]
            array = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
            return array.transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _is_grey(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I")
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _folder_labels(files: list[Path], root: Path, labels_csv: Path | None) -> tuple[np.ndarray | None, list[str] | None]:
    """Labels from a labels CSV (columns file,label) or from sub-folder names.

    Sub-folder names that are all integers are the labels; otherwise the sorted names map to
    0, 1, ... (returned as class names)."""
    if labels_csv is not None:
        import pandas as pd

        labels_csv = _require_file(labels_csv, "labels CSV")
        table = pd.read_csv(labels_csv, skipinitialspace=True, dtype=str)
        table.columns = [str(c).strip() for c in table.columns]
        if not {"file", "label"} <= set(table.columns):
            raise DataError(f"{labels_csv}: needs columns 'file' and 'label'; has {', '.join(table.columns)}")
        mapping = {str(f).strip(): str(v).strip() for f, v in zip(table["file"], table["label"])}
        out = []
        for f in files:
            rel = f.relative_to(root).as_posix()
            value = mapping.get(rel, mapping.get(f.name))
            if value is None:
                raise DataError(f"{labels_csv}: no label for image '{rel}'")
            try:
                out.append(int(value))
            except ValueError:
                raise DataError(f"{labels_csv}: label of '{rel}' is {value!r}, not an integer") from None
        return np.asarray(out, dtype=np.int64), None
    parents = [f.relative_to(root).parent for f in files]
    if all(p == Path(".") for p in parents):
        return None, None
    if any(p == Path(".") or len(p.parts) != 1 for p in parents):
        raise DataError(f"{root}: images must be either all directly in the folder or all in one level "
                        "of class sub-folders")
    names = sorted({p.name for p in parents})
    if all(n.lstrip("-").isdigit() for n in names):
        return np.asarray([int(p.name) for p in parents], dtype=np.int64), None
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[p.name] for p in parents], dtype=np.int64), names


def load_image_folder(path: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
                      color: str = "auto", name: str | None = None) -> InputSet:
    """A folder of PNG images (sorted by relative path), pixels scaled to [0, 1], rows in
    (C, H, W) order. Labels from `labels_csv` (columns file,label) or class sub-folders.
    color: 'grey', 'rgb' or 'auto' (grey when every image is greyscale)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if color not in ("auto", "grey", "rgb"):
        raise DataError(f"image color must be 'auto', 'grey' or 'rgb', got {color!r}")
    files = sorted((f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: f.relative_to(root).as_posix())
    if not files:
        raise DataError(f"{root}: no PNG images found")
    if color == "auto":
        color = "grey" if all(_is_grey(f) for f in files) else "rgb"
    labels, _class_names = _folder_labels(files, root, None if labels_csv is None else Path(labels_csv))
    images = []
    for f in files:
        image = _read_image(f, color)
        if images and image.shape != images[0].shape:
            raise DataError(f"{f}: image shape {image.shape[1:]} differs from {images[0].shape[1:]} of {files[0]}")
        images.append(image)
    stack = np.stack(images)
    ids = [f.relative_to(root).as_posix() for f in files]
    digest = _folder_digest(root, files)
    return InputSet(name or root.name, stack.reshape(len(files), -1), labels=labels, ids=ids,
                    image_shape=stack.shape[1:], domain=Domain.scalar(0.0, 1.0, int(np.prod(stack.shape[1:]))),
                    source=str(root), sha256=digest)


def _folder_digest(root: Path, files: list[Path]) -> str:
    """sha256 over (relative name, file sha256) of every image, in order."""
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def box_input_set(lower, upper, name: str = "box", feature_names: list[str] | None = None,
                  source: str = "", sha256: str = "") -> InputSet:
    """A box [lower, upper] (reachability over a region): X holds the centre (1, n) and the
    domain is the box itself."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape:
        raise DataError(f"box '{name}': {lo.size} lower bounds but {hi.size} upper bounds")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise DataError(f"box '{name}': bounds must be finite")
    if (lo > hi).any():
        i = int(np.flatnonzero(lo > hi)[0])
        raise DataError(f"box '{name}': lower > upper at feature {i}: {lo[i]} > {hi[i]}")
    centre = (lo + hi) / 2.0
    return InputSet(name, centre[None], ids=["box"], feature_names=feature_names,
                    domain=Domain(torch.as_tensor(lo), torch.as_tensor(hi)), source=source, sha256=sha256,
                    box_lower=lo, box_upper=hi)


def load_input_set(path: str | os.PathLike, *, x_key: str | None = None, label_key: str | None = None,
                   label_column: str | None = None, id_column: str | None = None,
                   labels_csv: str | os.PathLike | None = None, color: str = "auto",
                   name: str | None = None) -> InputSet:
    """Load by path: a folder (PNG images), .npy, .npz, .csv or .vnnlib (its input box)."""
    p = Path(path)
    if p.is_dir():
        return load_image_folder(p, labels_csv=labels_csv, color=color, name=name)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return load_npy(p, name=name)
    if suffix == ".npz":
        return load_npz(p, x_key=x_key, label_key=label_key, name=name)
    if suffix == ".csv":
        return load_csv(p, label_column=label_column, id_column=id_column, name=name)
    if suffix == ".vnnlib":
        from saferisk.data.vnnlib import load_vnnlib

        _require_file(p)
        spec = load_vnnlib(p)
        return box_input_set(spec.lower, spec.upper, name=name or p.stem, source=str(p), sha256=sha256_file(p))
    if not p.exists():
        raise DataError(f"input set not found: {p}")
    raise DataError(f"{p}: unknown input set format '{suffix}' (use .npy, .npz, .csv, .vnnlib or a PNG folder)")


# ----------------------------------------------------------------------------- selection

def select_first(input_set: InputSet, n: int) -> InputSet:
    if n < 1:
        raise DataError(f"select first: n must be >= 1, got {n}")
    return input_set.subset(range(min(n, len(input_set))))


def select_indices(input_set: InputSet, indices: Sequence[int]) -> InputSet:
    """Rows at explicit positions (0-based, in the given order, no repeats)."""
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < len(input_set)]
    if bad:
        raise DataError(f"input set '{input_set.name}' has {len(input_set)} rows; indices out of range: {bad[:5]}")
    if len(set(idx)) != len(idx):
        raise DataError(f"input set '{input_set.name}': repeated indices in the selection")
    return input_set.subset(idx)


def select_stratified(input_set: InputSet, per_class: int, seed: int = 0) -> InputSet:
    """Up to `per_class` rows of each label, drawn with `seed`; rows keep file order."""
    if input_set.labels is None:
        raise DataError(f"input set '{input_set.name}' has no labels; stratified selection needs them")
    if per_class < 1:
        raise DataError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(input_set.labels):
        rows = np.flatnonzero(input_set.labels == label)
        take = rows if rows.size <= per_class else rng.choice(rows, size=per_class, replace=False)
        chosen.extend(int(r) for r in take)
    return input_set.subset(sorted(chosen))


def select(input_set: InputSet, *, first: int | None = None, indices: Sequence[int] | None = None,
           per_class: int | None = None, seed: int = 0) -> InputSet:
    """At most one of first / indices / per_class (none: the whole set)."""
    given = [k for k, v in (("first", first), ("indices", indices), ("per_class", per_class)) if v is not None]
    if len(given) > 1:
        raise DataError(f"choose one selection, got {' and '.join(given)}")
    if first is not None:
        return select_first(input_set, first)
    if indices is not None:
        return select_indices(input_set, indices)
    if per_class is not None:
        return select_stratified(input_set, per_class, seed)
    return input_set


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
            X = domain.check_and_clip(torch.as_tensor(X)).numpy()
        except DataError:
            for row in range(X.shape[0]):  # name the row by its id (error path only)
                try:
                    domain.check_and_clip(torch.as_tensor(X[row:row + 1]), what="input")
                except DataError as exc:
                    detail = str(exc).split("row 0 ", 1)[-1]
                    raise DataError(f"{where}: row {input_set.ids[row]} {detail}") from None
            raise
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else input_set.image_shape
    if shape is not None and int(np.prod(shape)) != n_inputs:
        shape = input_set.image_shape
    return dataclasses.replace(input_set, X=np.ascontiguousarray(X), domain=domain, image_shape=shape)


def validate_for_model(input_set: InputSet, model, domain: Domain | None = None) -> InputSet:
    """`validate` against a loaded `saferisk.models.Model`."""
    return validate(input_set, model.n_inputs, model.input_shape, domain)


# ----------------------------------------------------------------------------- shards

def shard(input_set: InputSet, shard_size: int) -> list[InputSet]:
    """Consecutive shards of at most `shard_size` rows, named '<name>.shard<k>' (k from 0)."""
    if shard_size < 1:
        raise DataError(f"shard_size must be >= 1, got {shard_size}")
    n = len(input_set)
    count = max(1, -(-n // shard_size))
    width = max(3, len(str(count - 1)))
    return [input_set.subset(range(k * shard_size, min(n, (k + 1) * shard_size)),
                             name=f"{input_set.name}.shard{k:0{width}d}") for k in range(count)]


# ----------------------------------------------------------------------------- npz round trip

def _arrays_for_save(input_set: InputSet) -> list[tuple[str, np.ndarray]]:
    meta = {"format": _NPZ_FORMAT, "name": input_set.name, "source": input_set.source,
            "sha256": input_set.sha256, "feature_names": input_set.feature_names,
            "image_shape": None if input_set.image_shape is None else list(input_set.image_shape)}
    arrays = [("__saferisk__", np.asarray([json.dumps(meta, sort_keys=True)])),
              ("X", input_set.X.astype("<f8")),
              ("ids", np.asarray(input_set.ids, dtype=str).reshape(-1))]
    if input_set.labels is not None:
        arrays.append(("labels", input_set.labels.astype("<i8")))
    if input_set.domain is not None:
        arrays.append(("domain_lower", input_set.domain.lower.numpy().astype("<f8")))
        arrays.append(("domain_upper", input_set.domain.upper.numpy().astype("<f8")))
    if input_set.box_lower is not None:
        arrays.append(("box_lower", np.asarray(input_set.box_lower, dtype="<f8")))
        arrays.append(("box_upper", np.asarray(input_set.box_upper, dtype="<f8")))
    return arrays


def npz_bytes(input_set: InputSet) -> bytes:
    """The `.npz` archive of a set: fixed member order and zip timestamps (byte-stable)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in _arrays_for_save(input_set):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_npz(input_set: InputSet, path: str | os.PathLike) -> None:
    """Write the set (rows, labels, ids, domain, box, metadata) atomically to `path`."""
    data = npz_bytes(input_set)

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, _write)


def _from_saved(arrays: dict[str, np.ndarray], path: Path, name: str | None) -> InputSet:
    try:
        meta = json.loads(str(arrays["__saferisk__"].reshape(-1)[0]))
        if meta.get("format") != _NPZ_FORMAT:
            raise DataError(f"{path}: unknown saferisk input set format {meta.get('format')!r}")
        domain = None
        if "domain_lower" in arrays:
            domain = Domain(torch.as_tensor(arrays["domain_lower"]), torch.as_tensor(arrays["domain_upper"]))
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
    return load_npz(path)
