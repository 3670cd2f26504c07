"""One reader per input-set format (see base.Source for what each provides).

Adding a format: write `<format>.py` with a `Source` subclass taking (path, ReadOptions), add
it to READERS and to the schema's `input_sets.*.format` enum; nothing else reads files."""

from __future__ import annotations

from pathlib import Path

from saferisk.data.formats.base import ReadOptions, Source
from saferisk.data.formats.box import BoxSource, read_box
from saferisk.data.formats.csv_table import CsvSource
from saferisk.data.formats.npy import NpySource
from saferisk.data.formats.npz import NpzSource
from saferisk.data.formats.png_folder import PngFolderSource
from saferisk.errors import DataError

READERS: dict[str, type[Source]] = {"npy": NpySource, "npz": NpzSource, "csv": CsvSource, "png": PngFolderSource}
BOX_SUFFIXES = (".vnnlib", ".json")
FORMATS = (*READERS, "box")


def format_of(path: Path, declared: str = "auto") -> str:
    """The declared format, else by the path: a folder is png, a .vnnlib/.json file a box,
    otherwise the suffix."""
    if declared != "auto":
        return declared
    if path.is_dir():
        return "png"
    if path.suffix.lower() in BOX_SUFFIXES:
        return "box"
    return path.suffix.lower().lstrip(".")


def open_source(path: Path, fmt: str = "auto", options: ReadOptions = ReadOptions()) -> Source:
    """The opened source at `path` (a box file as a one-row box source)."""
    fmt = format_of(path, fmt)
    if fmt == "box":
        return BoxSource(read_box(None, path), name=options.name or path.stem, path=path)
    if fmt not in READERS:
        if not path.exists():
            raise DataError(f"input set not found: {path}")
        raise DataError(f"{path}: unknown input set format {fmt!r}; choose one of: {', '.join(FORMATS)} "
                        "(.npy, .npz, .csv, .vnnlib, a box .json or a PNG folder)")
    return READERS[fmt](path, options)


__all__ = ["FORMATS", "READERS", "BoxSource", "ReadOptions", "Source", "format_of", "open_source", "read_box"]
