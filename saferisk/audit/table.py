"""The tidy audit table: one row per (model, input_set, property, norm, input_id).

Columns: the key columns, then the other `RESULT_FIELDS` of `saferisk.result.RadiusResult`
(with `extra` as a sorted JSON string), plus
  shard  the shard file the row came from (relative name, e.g. 'shard-0.parquet'),
  outcome  what is known of the input within max_radius, in the words the reports use:
         `violated` (a witness within max_radius, or the property fails at the input itself),
         `certified_safe` (proved safe on the whole ball of radius max_radius: radius_lower >=
         max_radius), `undecided` (no witness found and not proved up to max_radius: NOT a
         statement of safety), `failed` (the input could not be assessed).
Non-finite radii are stored as nulls. The timings (`seconds`, `certify_seconds`) are kept in
memory but written apart, to <stem>.timings.csv: they differ from run to run, the evidence
table (.parquet, .csv, the PDF attachment) does not. Every shard given to `aggregate` must exist (a
DataError otherwise); which shards an audit has is the plan's business: the workflow's rules
list them and Snakemake runs the aggregation only once all exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from saferisk.errors import DataError
from saferisk.io import atomic_write
from saferisk.result import RESULT_FIELDS, STATUS_OK, STATUS_VIOLATED_AT_INPUT

KEY_COLUMNS = ("model", "input_set", "property", "norm", "input_id")
TABLE_COLUMNS = (*KEY_COLUMNS, *(c for c in RESULT_FIELDS if c not in KEY_COLUMNS), "shard", "outcome")
OUTCOMES = ("violated", "certified_safe", "undecided", "failed")
FLOAT_COLUMNS = ("max_radius", "value_at_x0", "threshold", "radius_lower", "radius_estimate",
                 "lipschitz_estimate", "radius_upper", "seconds", "certify_seconds")
TIMING_COLUMNS = ("seconds", "certify_seconds")  # machine- and load-dependent: not evidence
INT_COLUMNS = ("label", "decision")  # nullable
COUNT_COLUMNS = ("evaluations", "seed")
BOOL_COLUMNS = ("estimate_exceeds_upper",)
STRING_COLUMNS = tuple(c for c in RESULT_FIELDS if c not in
                       (*FLOAT_COLUMNS, *INT_COLUMNS, *COUNT_COLUMNS, *BOOL_COLUMNS, "extra"))


def _extra_json(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "{}"
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except json.JSONDecodeError as exc:
            raise DataError(f"column 'extra' holds invalid JSON {value[:60]!r}: {exc}") from None
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def extra_dict(text) -> dict:
    """A row's `extra` JSON as a dict ({} when empty or unreadable)."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_shard(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for corrupt files
        raise DataError(f"{path}: cannot read radius shard: {exc}") from None
    missing = [c for c in RESULT_FIELDS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: radius shard lacks column(s) {', '.join(missing)}")
    frame = frame.loc[:, list(RESULT_FIELDS)].copy()
    frame["shard"] = path.name
    return frame


def normalise_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce dtypes (nulls for non-finite floats), compute `outcome`, sort deterministically."""
    frame = frame.copy()
    for name in TABLE_COLUMNS:
        if name not in frame.columns:
            frame[name] = None
    for name in FLOAT_COLUMNS:
        values = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        frame[name] = values.where(np.isfinite(values), np.nan)
    for name in INT_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    for name in COUNT_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").fillna(0).astype("int64")
    for name in BOOL_COLUMNS:
        frame[name] = frame[name].fillna(False).astype(bool)
    for name in (*STRING_COLUMNS, "shard"):
        frame[name] = frame[name].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                      else str(v)).astype(object)
    frame["extra"] = frame["extra"].map(_extra_json).astype(object)
    frame.loc[frame["status"] == "", "status"] = "failed: no status recorded"
    frame["outcome"] = outcomes(frame)
    frame = frame.loc[:, list(TABLE_COLUMNS)]
    return sort_table(frame)


def outcomes(frame: pd.DataFrame) -> pd.Series:
    """The `outcome` word of every row (see the module docstring)."""
    status = frame["status"]
    found = frame["radius_upper"].notna() | (status == STATUS_VIOLATED_AT_INPUT)
    assessed = status.isin([STATUS_OK, STATUS_VIOLATED_AT_INPUT])
    proved = frame["radius_lower"].notna() & (frame["radius_lower"] >= frame["max_radius"] * (1 - 1e-9))
    words = np.where(found, "violated", np.where(proved, "certified_safe", "undecided"))
    return pd.Series(np.where(assessed, words, "failed"), index=frame.index, dtype=object)


def _natural(values: pd.Series) -> pd.Series:
    return values.map(lambda v: f"{int(v):020d}" if str(v).isdigit() else f"~{v}")


def sort_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by (model, input_set, property, norm, input_id) with numeric ids in
    numeric order; index reset."""
    order = frame.assign(_id=_natural(frame["input_id"])).sort_values(
        ["model", "input_set", "property", "norm", "_id"], kind="mergesort").index
    return frame.loc[order].reset_index(drop=True)


def aggregate(shard_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Read radius shards into the tidy table.

    Raises DataError for a shard not found, an unreadable shard, a missing column or a
    duplicated key.
    """
    frames = []
    for path in map(Path, shard_paths):
        if not path.exists():
            raise DataError(f"{path}: radius shard not found")
        frames.append(_read_shard(path))
    frames = [f for f in frames if len(f)]
    if not frames:
        return normalise_table(pd.DataFrame(columns=list(TABLE_COLUMNS)))
    table = normalise_table(pd.concat(frames, ignore_index=True))
    duplicated = table.duplicated(list(KEY_COLUMNS), keep=False)
    if duplicated.any():
        row = table.loc[duplicated].iloc[0]
        key = ", ".join(f"{k}={row[k]}" for k in KEY_COLUMNS)
        raise DataError(f"duplicated result rows for ({key}) in shard(s) "
                        f"{sorted(set(table.loc[duplicated, 'shard']))}")
    return table


def table_from_results(results: Iterable) -> pd.DataFrame:
    """Tidy table from RadiusResult objects (tests, the single-model CLI path)."""
    rows = [r.to_dict() for r in results]
    for row in rows:
        row["shard"] = row.get("shard", "")
    return normalise_table(pd.DataFrame(rows, columns=[*RESULT_FIELDS, "shard"]))


def evidence(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its timing columns: what the same config, data and code reproduce."""
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table.columns])


def write_tables(table: pd.DataFrame, out_dir: str | Path, stem: str = "audit",
                 timings: bool = False) -> tuple[Path, Path]:
    """Write <out_dir>/<stem>.parquet and .csv atomically (the evidence columns), rows sorted,
    floats as the shortest repr that round-trips; with `timings`, the timing columns go to
    <stem>.timings.csv. Returns (parquet path, csv path)."""
    out_dir = Path(out_dir)
    table = normalise_table(table)
    parquet_path, csv_path = out_dir / f"{stem}.parquet", out_dir / f"{stem}.csv"
    atomic_write(parquet_path, lambda tmp: evidence(table).to_parquet(tmp, index=False, engine="pyarrow"))
    csv_text = table_csv(table)
    atomic_write(csv_path, lambda tmp: Path(tmp).write_text(csv_text, encoding="utf-8"))
    if timings:
        timings_csv = table.loc[:, [*KEY_COLUMNS, *TIMING_COLUMNS]].to_csv(index=False, lineterminator="\n", na_rep="")
        atomic_write(out_dir / f"{stem}.timings.csv", lambda tmp: Path(tmp).write_text(timings_csv, encoding="utf-8"))
    return parquet_path, csv_path


def table_csv(table: pd.DataFrame) -> str:
    """The evidence table as CSV text (the PDF attachment and the .csv file share it)."""
    return evidence(table).to_csv(index=False, lineterminator="\n", na_rep="")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read an audit table written by `write_tables` (Parquet or CSV)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: audit table not found")
    try:
        frame = pd.read_csv(path, dtype={"input_id": str}) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot read audit table: {exc}") from None
    missing = [c for c in RESULT_FIELDS if c not in frame.columns and c not in TIMING_COLUMNS]
    if missing:
        raise DataError(f"{path}: audit table lacks column(s) {', '.join(missing)}")
    return normalise_table(frame)
