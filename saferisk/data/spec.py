"""An input set as configured: one parsed spec, two calls.

    spec = InputSetSpec.from_config(name, entry, base, seeds)   # or InputSetSpec.from_path(path)
    describe(spec)          -> InputSetDescription (rows, features, labels?, row digests: cheap)
    load(spec, positions)   -> InputSet (the selected rows, or the rows at source `positions`)

The config layer (parse time), the workflow's shard jobs, `saferisk init` and the CLI all
go through these two calls; the readers live in saferisk.data.formats, the selection rules in
saferisk.data.selection.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from saferisk.data.domain import Domain
from saferisk.data.formats import BoxSource, ReadOptions, Source, format_of, open_source, read_box
from saferisk.data.inputs import InputSet
from saferisk.data.selection import selected_positions
from saferisk.data.shards import fingerprint
from saferisk.errors import DataError

DEMO_PREFIX = "demo:"


def resolve_path(value: str, base: Path) -> Path:
    """A configured path: `demo:<file>` (shipped with saferisk), else relative to `base`."""
    if value.startswith(DEMO_PREFIX):
        from saferisk.demo import DEMO_DIR

        return DEMO_DIR / value[len(DEMO_PREFIX):]
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class InputSetSpec:
    """Where an input set comes from and which of its rows are used.

    path/format/options: a data source; box/samples: a region instead (row 0 the centre,
    then `samples` drawn points). selection: {first | indices | per_class}. domain: a
    {lower, upper} block replacing the set's own domain. `key` names the spec in messages."""

    name: str
    path: Path | None = None
    format: str = "auto"
    options: ReadOptions = ReadOptions()
    box: dict[str, list[float]] | None = None
    box_file: Path | None = None
    samples: int = 0
    selection: dict[str, Any] | None = None
    domain: dict[str, Any] | None = None
    selection_seed: int = 0
    samples_seed: int = 0
    key: str = ""
    source_name: str | None = None  # how loaded sets name their source (the configured spelling)

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any], base: Path, seeds: dict[str, int]) -> "InputSetSpec":
        """From an `input_sets.<name>` entry (schema-validated); DataError names the sub-key."""
        key = f"input_sets.{name}"
        common = dict(name=name, selection=entry.get("selection") or None, domain=entry.get("domain") or None,
                      selection_seed=int(seeds.get("selection", 0)), samples_seed=int(seeds.get("samples", 0)),
                      key=key)
        if entry.get("box") is not None or entry.get("format") == "box":
            if entry.get("box") is None:
                raise DataError(f"{key}.box: format 'box' needs a box ({{lower, upper}} or a JSON file)")
            box_file = resolve_path(entry["box"], base) if isinstance(entry["box"], str) else None
            try:
                box = read_box(entry["box"], box_file)
            except DataError as exc:
                raise DataError(f"{key}.box: {exc}") from None
            return cls(format="box", box=box, box_file=box_file, samples=int(entry.get("samples", 0)), **common)
        if not entry.get("path"):
            raise DataError(f"{key}: give a `path` (data file or PNG folder) or a `box`")
        path = resolve_path(entry["path"], base)
        if not path.exists():
            raise DataError(f"{key}.path: not found: {path}")
        fmt = format_of(path, entry.get("format", "auto"))
        labels = entry.get("labels")
        if fmt == "png" and labels:
            labels = str(resolve_path(labels, base))
        return cls(path=path, format=fmt, options=ReadOptions(labels=labels, name=name), source_name=entry["path"],
                   **common)

    @classmethod
    def from_path(cls, path: str | os.PathLike, *, name: str | None = None, format: str = "auto",
                  labels: str | None = None, x_key: str | None = None, id_column: str | None = None,
                  color: str = "auto") -> "InputSetSpec":
        """A whole data file, folder or box file (the CLI's --inputs); every row, its own domain."""
        path = Path(path)
        return cls(name=name or (path.name if path.is_dir() else path.stem), path=path,
                   format=format_of(path, format) if path.exists() else format,
                   options=ReadOptions(labels=labels, x_key=x_key, id_column=id_column, color=color, name=name),
                   key=str(path))

    @property
    def where(self) -> str:
        """The config sub-key of the source, for messages."""
        return f"{self.key}.box" if self.box is not None else f"{self.key}.path"

    def open(self) -> Source:
        if self.box is not None:
            return BoxSource(self.box, self.samples, self.samples_seed, self.name)
        if self.path is None:
            raise DataError(f"{self.key}: no path and no box")
        return open_source(self.path, self.format, self.options)


@dataclass
class InputSetDescription:
    """What the plan knows about an input set before any job runs (after selection)."""

    n_rows: int
    n_features: int | None  # None when it cannot be told cheaply
    has_labels: bool
    row_digests: list[str] = field(default_factory=list)  # one per selected row
    positions: list[int] = field(default_factory=list)  # source row of each selected row (box: 0 = centre)
    source: Path | None = None
    box: dict[str, list[float]] | None = None

    def shard_fingerprint(self, start: int, stop: int) -> str:
        return fingerprint(self.row_digests[start:stop])


def _positions(spec: InputSetSpec, source: Source) -> list[int]:
    try:
        return selected_positions(source.n_rows, spec.selection, source.labels, spec.selection_seed)
    except DataError as exc:
        raise SelectionError(f"{spec.key or spec.name}.selection.{exc}") from None


class SelectionError(DataError):
    """A selection that does not fit the source (its message names the selection key)."""


def describe(spec: InputSetSpec) -> InputSetDescription:
    """Rows, features, labels and per-row digests of the selected rows; the selected rows'
    values are checked (finite numbers) where that is cheap."""
    source = spec.open()
    positions = _positions(spec, source)
    source.check_rows(positions)
    src = spec.box_file if spec.box is not None else spec.path
    return InputSetDescription(len(positions), source.n_features, source.has_labels, source.row_digests(positions),
                               positions, src, spec.box)


def load(spec: InputSetSpec, positions: Sequence[int] | None = None, expected_fingerprint: str | None = None) -> InputSet:
    """The selected rows (or the rows at source `positions`), with the spec's domain.

    expected_fingerprint: the fingerprint of those rows when the plan was made; a different
    one means the data changed since (DataError: rerun snakemake)."""
    source = spec.open()
    if positions is None:
        positions = _positions(spec, source)
    positions = [int(p) for p in positions]
    if positions and max(positions) >= source.n_rows:
        raise DataError(f"input set '{spec.name}' has {source.n_rows} rows, the shard needs row {max(positions)}; "
                        f"the data changed since the workflow was parsed: rerun snakemake")
    if expected_fingerprint is not None and fingerprint(source.row_digests(positions)) != expected_fingerprint:
        raise DataError(f"input set '{spec.name}': the source data changed while the workflow ran; rerun snakemake")
    data = source.read(positions)
    if spec.source_name is not None:  # `demo:x.npz` or the path as written, not a machine's absolute path
        data = dataclasses.replace(data, source=spec.source_name)
    if spec.domain is not None:
        data = dataclasses.replace(data, domain=Domain.from_bounds(spec.domain["lower"], spec.domain["upper"],
                                                                   data.n_features))
    return data


def load_path(path: str | os.PathLike, **options) -> InputSet:
    """Every row of a data file, folder or box file (`InputSetSpec.from_path` options)."""
    return load(InputSetSpec.from_path(path, **options))
