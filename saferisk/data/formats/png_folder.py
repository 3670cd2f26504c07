"""A folder of PNG images (sorted by relative path) as an input set: pixels scaled to [0, 1],
rows in (C, H, W) order, domain [0, 1]. Labels from a labels CSV (columns file,label) or one
level of class sub-folders. Describing lists the files and opens the first image's header;
reading decodes only the images asked for."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.domain import Domain
from saferisk.data.formats.base import ReadOptions, Source, all_positions, digest, require_file
from saferisk.data.inputs import InputSet
from saferisk.errors import DataError
from saferisk.io import sha256_file

IMAGE_SUFFIXES = (".png",)
GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I")


def _read_image(path: Path, color: str) -> np.ndarray:
    """One image -> float64 (C, H, W) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if color == "grey":
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    return (np.asarray(image, dtype=np.float64) / 65535.0)[None]
                return (np.asarray(image.convert("L"), dtype=np.float64) / 255.0)[None]
            return (np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _is_grey(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in GREY_MODES
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _csv_labels(files: list[Path], root: Path, labels_csv: Path) -> np.ndarray:
    import pandas as pd

    require_file(labels_csv, "labels CSV")
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
    return np.asarray(out, dtype=np.int64)


def _folder_labels(files: list[Path], root: Path) -> np.ndarray | None:
    """Labels from sub-folder names: integers as they are, other names sorted -> 0, 1, ..."""
    parents = [f.relative_to(root).parent for f in files]
    if all(p == Path(".") for p in parents):
        return None
    if any(p == Path(".") or len(p.parts) != 1 for p in parents):
        raise DataError(f"{root}: images must be either all directly in the folder or all in one level "
                        "of class sub-folders")
    names = sorted({p.name for p in parents})
    if all(n.lstrip("-").isdigit() for n in names):
        return np.asarray([int(p.name) for p in parents], dtype=np.int64)
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[p.name] for p in parents], dtype=np.int64)


class PngFolderSource(Source):
    def __init__(self, path: Path, options: ReadOptions = ReadOptions()) -> None:
        if not path.is_dir():
            raise DataError(f"image folder not found: {path}")
        if options.color not in ("auto", "grey", "rgb"):
            raise DataError(f"image color must be 'auto', 'grey' or 'rgb', got {options.color!r}")
        self.path, self.options = path, options
        self.files = sorted((f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda f: f.relative_to(path).as_posix())
        if not self.files:
            raise DataError(f"{path}: no PNG images found")
        self.n_rows = len(self.files)
        self.has_labels = options.labels is not None or any(f.parent != path for f in self.files)
        self.n_features = self._features_of_first()

    def _features_of_first(self) -> int | None:
        from PIL import Image

        try:
            with Image.open(self.files[0]) as im:
                channels = 1 if im.mode in ("L", "1", "I", "I;16", "LA", "P") else 3
                return im.width * im.height * channels if im.mode in ("L", "RGB", "1") else None
        except OSError:
            return None

    def labels(self) -> np.ndarray | None:
        if self.options.labels is not None:
            return _csv_labels(self.files, self.path, Path(self.options.labels))
        return _folder_labels(self.files, self.path)

    def row_digests(self, positions: Sequence[int]) -> list[str]:
        """sha256 of the image's relative name and file bytes."""
        return [digest(self.files[p].relative_to(self.path).as_posix().encode(), self.files[p].read_bytes())
                for p in positions]

    def folder_digest(self) -> str:
        """sha256 over (relative name, file sha256) of every image, in order."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.relative_to(self.path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
        return h.hexdigest()

    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        pos = all_positions(positions, self.n_rows)
        color = self.options.color
        if color == "auto":
            color = "grey" if all(_is_grey(f) for f in self.files) else "rgb"
        labels = self.labels()
        images = []
        for p in pos:
            image = _read_image(self.files[p], color)
            if images and image.shape != images[0].shape:
                raise DataError(f"{self.files[p]}: image shape {image.shape[1:]} differs from {images[0].shape[1:]} "
                                f"of {self.files[pos[0]]}")
            images.append(image)
        stack = np.stack(images)
        n = int(np.prod(stack.shape[1:]))
        return InputSet(self.options.name or self.path.name, stack.reshape(len(pos), -1),
                        labels=None if labels is None else labels[pos],
                        ids=[self.files[p].relative_to(self.path).as_posix() for p in pos],
                        image_shape=stack.shape[1:], domain=Domain.scalar(0.0, 1.0, n), source=str(self.path),
                        sha256=self.folder_digest())
