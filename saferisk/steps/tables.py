"""Table steps: one model's radius shards -> its tidy table and summary; every model's tables
-> the audit table and summary. The summary is computed here, once, and the reports read it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from saferisk.config.criteria import summary_criteria
from saferisk.io import atomic_write_json

log = logging.getLogger("saferisk.steps")


def aggregate_model(model_name: str, shard_paths: Sequence[str], criteria: list[dict], out_dir: str) -> dict:
    """<out_dir>/<m>.parquet (+ .csv), <m>.summary.json and <m>.timings.csv from one model's
    radius shards."""
    from saferisk.audit.summary import summarize
    from saferisk.audit.table import aggregate, write_tables

    table = aggregate(shard_paths)
    write_tables(table, out_dir, stem=model_name, timings=True)
    summary = summarize(table, summary_criteria(criteria), models=[model_name]).to_dict()
    atomic_write_json(Path(out_dir) / f"{model_name}.summary.json", summary)
    log.info("model %s: %d rows from %d shards", model_name, len(table), len(shard_paths))
    return summary


def combine_tables(model_tables: Sequence[str], criteria: list[dict], out_dir: str, models: list[str]) -> dict:
    """<out_dir>/audit.{parquet,csv} + summary.json over every model."""
    import pandas as pd

    from saferisk.audit.summary import summarize
    from saferisk.audit.table import read_table, write_tables

    frames = [read_table(p) for p in model_tables]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_tables(table, out_dir, stem="audit")
    summary = summarize(table, summary_criteria(criteria), models=models).to_dict()
    atomic_write_json(Path(out_dir) / "summary.json", summary)
    return summary
