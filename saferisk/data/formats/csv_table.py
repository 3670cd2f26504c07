"""CSV input sets: a header row, feature columns (names kept), an optional label column and
id column. Describing reads the text lines only; reading parses with pandas."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from saferisk.data.formats.base import ReadOptions, Source, all_positions, digest, integer_labels, require_file
from saferisk.data.inputs import InputSet, check_finite
from saferisk.errors import DataError
from saferisk.io import sha256_file


class CsvSource(Source):
    def __init__(self, path: Path, options: ReadOptions = ReadOptions()) -> None:
        self.path = require_file(path)
        self.options = options
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from None
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise DataError(f"{path}: has no data rows")
        self.header = [c.strip() for c in lines[0].split(",")]
        for column, what in ((options.labels, "label"), (options.id_column, "id")):
            if column is not None and column not in self.header:
                raise DataError(f"{path}: no {what} column '{column}'; columns: {', '.join(self.header)}")
        self.lines = lines[1:]
        self.n_rows = len(self.lines)
        self.n_features = len([c for c in self.header if c not in (options.labels, options.id_column)])
        self.has_labels = options.labels is not None

    def labels(self) -> np.ndarray | None:
        if self.options.labels is None:
            return None
        col = self.header.index(self.options.labels)
        try:
            values = np.asarray([float(line.split(",")[col]) for line in self.lines])
        except (ValueError, IndexError):
            raise DataError(f"{self.path}: column '{self.options.labels}' holds a value that is not a label") from None
        return integer_labels(values, str(self.path), self.options.labels)

    def row_digests(self, positions: Sequence[int]) -> list[str]:
        """sha256 of the row's text line (label included)."""
        return [digest(self.lines[p].encode()) for p in positions]

    def read(self, positions: Sequence[int] | None = None) -> InputSet:
        import pandas as pd

        label_column, id_column = self.options.labels, self.options.id_column
        try:
            frame = pd.read_csv(self.path, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        if len(frame) == 0:
            raise DataError(f"{self.path}: the input set is empty")
        pos = all_positions(positions, len(frame))
        frame = frame.iloc[pos]
        features = [c for c in frame.columns if c not in (label_column, id_column)]
        if not features:
            raise DataError(f"{self.path}: no feature columns")
        values = frame[features].apply(pd.to_numeric, errors="coerce")
        text_cells = values.isna() & frame[features].notna()
        if text_cells.to_numpy().any():
            row, col = (int(v[0]) for v in np.nonzero(text_cells.to_numpy()))
            raise DataError(f"{self.path}: row {pos[row]} column '{features[col]}' = "
                            f"{frame[features].iat[row, col]!r} is not a number")
        X = values.to_numpy(dtype=np.float64)
        ids = [str(v) for v in frame[id_column]] if id_column is not None else [str(p) for p in pos]
        check_finite(X, str(self.path), ids)
        labels = None
        if label_column is not None:
            raw = frame[label_column]
            if raw.isna().any():
                raise DataError(f"{self.path}: row {pos[int(np.flatnonzero(raw.isna())[0])]} has no label in "
                                f"column '{label_column}'")
            labels = integer_labels(pd.to_numeric(raw, errors="coerce").to_numpy(), str(self.path), label_column)
        return InputSet(self.options.name or self.path.stem, X, labels=labels, ids=ids, feature_names=features,
                        source=str(self.path), sha256=sha256_file(self.path))
