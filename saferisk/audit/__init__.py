"""Aggregation of radius shards into tidy tables, summary statistics and verdicts.

    table = aggregate(shard_paths)                         # one row per (model, input_set,
                                                           #  property, norm, input_id)
    write_tables(table, "results/tables")                  # audit.parquet + audit.csv
    summary = summarize(table, criteria, radii=None, models=None)
    summary.overall(model).label                           # e.g. 'PASS (certified)'
    atomic_write_json(path, summary.for_model(m).to_dict())
    summary = AuditSummary.from_dict(json.loads(path.read_text()))   # read back, for the reports

See saferisk.audit.table (columns), saferisk.audit.states (what an input is at a radius),
saferisk.audit.summary (fractions) and saferisk.audit.verdict (criteria, PASS / FAIL /
INCONCLUSIVE). Imports go one way: states <- verdict <- summary (table needs none of them).

The names below load their modules on first use (PEP 562): the radius jobs, which write their
shards with `saferisk.audit.table`, do not load the summary and verdict code.
"""

from typing import TYPE_CHECKING

from saferisk.lazy import lazy_package

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
    from saferisk.audit.summary import AuditSummary, GroupSummary, RadiusStats, summarize
    from saferisk.audit.table import (
        KEY_COLUMNS, TABLE_COLUMNS, aggregate, normalise_table, read_table, table_csv, table_from_results,
        write_tables,
    )
    from saferisk.audit.verdict import FAIL, INCONCLUSIVE, NO_CRITERION, PASS, Criterion, Verdict, parse_criteria

_EXPORTS = {
    **dict.fromkeys(("AuditSummary", "GroupSummary", "RadiusStats", "summarize"), "summary"),
    **dict.fromkeys(("KEY_COLUMNS", "TABLE_COLUMNS", "aggregate", "normalise_table", "read_table", "table_csv",
                     "table_from_results", "write_tables"), "table"),
    **dict.fromkeys(("FAIL", "INCONCLUSIVE", "NO_CRITERION", "PASS", "Criterion", "Verdict", "parse_criteria"),
                    "verdict"),
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_package(__name__, _EXPORTS, globals())
