"""saferisk.audit: tidy table from shards, NaN radii, fractions, verdicts, summary JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from saferisk.audit import (
    FAIL, INCONCLUSIVE, NO_CRITERION, PASS, AuditSummary, aggregate, parse_criteria, read_table, summarize,
    table_from_results, write_tables,
)
from saferisk.audit.table import KEY_COLUMNS, TIMING_COLUMNS, evidence, normalise_table
from saferisk.errors import ConfigError, DataError
from saferisk.io import dumps_json
from saferisk.result import RESULT_FIELDS, RadiusResult, failed_status


def result(i, lower, estimate, upper, *, prop="robustness", norm="inf", model="m", status="ok", **kw):
    return RadiusResult(input_id=str(i), property=prop, norm=norm, max_radius=0.1, model=model, input_set="test",
                        radius_lower=lower, radius_estimate=estimate, radius_upper=upper, status=status, **kw)


def write_shard(path, results):
    rows = [r.to_dict() for r in results]
    for row in rows:
        row["extra"] = json.dumps(row["extra"])
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(RESULT_FIELDS)).to_parquet(path, index=False)
    return path


# Ten inputs at r = 0.02 (L-inf): 6 certified (lower >= 0.02), 2 with a witness within 0.02,
# 1 bracket straddling 0.02, 1 failed.
TEN = [result(i, 0.03, 0.05, None) for i in range(6)] + [
    result(6, 0.005, 0.03, 0.015), result(7, 0.0, 0.01, 0.012), result(8, 0.01, 0.04, 0.05),
    result(9, None, None, None, status=failed_status("NaN outputs"))]


def test_aggregate_sorts(tmp_path):
    base = tmp_path / "radii" / "m" / "test" / "robustness-inf"
    shard0 = write_shard(base / "shard-0.parquet", [result(i, 0.01, 0.02, None) for i in (10, 2, 1)])
    table = aggregate([shard0])
    assert list(table["input_id"]) == ["1", "2", "10"]  # numeric order
    assert set(table["shard"]) == {"shard-0.parquet"}


def test_aggregate_errors(tmp_path):
    base = tmp_path / "m" / "test" / "robustness-inf"
    shard = write_shard(base / "shard-0.parquet", [result(1, 0.01, 0.02, None)])
    with pytest.raises(DataError, match="duplicated result rows .*input_id=1"):
        aggregate([shard, write_shard(base / "shard-1.parquet", [result(1, 0.01, 0.02, None)])])
    broken = base / "shard-2.parquet"
    pd.DataFrame({"input_id": ["1"]}).to_parquet(broken)
    with pytest.raises(DataError, match=r"shard-2.parquet: radius shard lacks column\(s\) property"):
        aggregate([broken])
    with pytest.raises(DataError, match="not found"):
        aggregate([base / "nope.parquet"])


def test_nan_radii_become_nulls_and_stats_are_nan_aware():
    table = table_from_results([result(0, float("nan"), 0.02, float("inf")), result(1, 0.01, float("nan"), 0.03),
                                result(2, 0.03, 0.04, None)])
    assert table["radius_lower"].isna().sum() == 1 and table["radius_upper"].isna().sum() == 2
    group = summarize(table).groups[0]
    assert group.radius_lower.n_values == 2 and group.radius_lower.n_null == 1
    assert group.radius_lower.mean == pytest.approx(0.02) and group.radius_lower.min == pytest.approx(0.01)
    assert group.radius_estimate.median == pytest.approx(0.03)
    assert group.n_risks_found == 1
    # no witness is not "safe": only radius_lower >= max_radius (0.1) is; a witness is a violation
    assert list(table["outcome"]) == ["undecided", "violated", "undecided"]
    proved = table_from_results([result(3, 0.1, 0.2, None), result(4, 0.05, 0.2, None, status="failed: NaN outputs")])
    assert list(proved["outcome"]) == ["certified_safe", "failed"]


def test_fraction_curves_and_counts():
    group = summarize(table_from_results(TEN), radii=[0.01, 0.02]).groups[0]
    assert group.n_inputs == 10 and group.n_failed == 1 and group.failure_reasons == {"NaN outputs": 1}
    assert group.radii == [0.01, 0.02]
    # r = 0.01: certified 0..5 and 8 (lower 0.01 >= 0.01) = 7; r = 0.02: 0..5 = 6
    assert group.certified_fraction == pytest.approx([0.7, 0.6])
    # witnesses within r: none at 0.01 (0.012, 0.015 > 0.01); 6 and 7 at 0.02
    assert group.risk_fraction == pytest.approx([0.0, 0.2])
    # estimate >= r and not proven unsafe: r=0.01 -> 0..8 = 9; r=0.02 -> 0..5, 8 = 7
    assert group.estimate_fraction == pytest.approx([0.9, 0.7])
    assert group.n_risks_found == 3


@pytest.mark.parametrize("min_fraction, basis, expected", [
    (0.6, "certified", PASS),          # 6/10 certified
    (0.8, "certified", INCONCLUSIVE),  # between 60% and 80% (2 with witness)
    (0.85, "certified", FAIL),         # at most 8/10 can be safe
    (0.7, "estimate", PASS),
    (0.75, "estimate", INCONCLUSIVE),  # 7/10 estimated + 1 failed unknown
    (0.9, "estimate", FAIL),
])
def test_verdicts(min_fraction, basis, expected):
    criteria = [{"property": "robustness", "norm": "Linf", "radius": 0.02, "min_fraction": min_fraction, "basis": basis}]
    summary = summarize(table_from_results(TEN), criteria)
    verdict = summary.criterion_verdicts[0]
    assert verdict.verdict == expected, verdict.reason
    assert verdict.basis == basis
    overall = summary.overall("m")
    assert overall.verdict == expected
    if expected != INCONCLUSIVE and basis == "estimate":
        assert "estimate only" in overall.label
    if expected == PASS and basis == "certified":
        assert overall.label == "PASS (certified)"


def test_verdict_combination_and_missing_property():
    results = TEN + [result(i, 0.05, 0.06, None, prop="uncertainty") for i in range(5)]
    criteria = [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.5},
                {"property": "uncertainty-inf", "radius": 0.02, "min_fraction": 0.9, "basis": "estimate"},
                {"property": "reachability", "radius": 0.02, "min_fraction": 0.5, "model": "m"}]
    summary = summarize(table_from_results(results), criteria, models=["m", "failed-model"])
    by_scope = {(v.model, v.scope): v for v in summary.property_verdicts}
    assert by_scope[("m", "robustness-inf")].verdict == PASS
    assert by_scope[("m", "uncertainty-inf")].basis == "estimate"
    assert by_scope[("m", "reachability")].verdict == INCONCLUSIVE
    reach = [v for v in summary.criterion_verdicts if v.model == "m" and v.criterion.property == "reachability"][0]
    assert reach.reason == "no results for reachability"
    assert summary.overall("m").verdict == INCONCLUSIVE
    assert summary.overall("failed-model").verdict == INCONCLUSIVE  # a model without rows does not vanish
    assert {v.reason for v in summary.criterion_verdicts if v.model == "failed-model"} == {
        "no results for robustness-inf", "no results for uncertainty-inf"}
    # a criterion without model skips a model that does not measure its property
    other = summarize(table_from_results(results + [result(0, 0.05, 0.06, None, model="n")]), criteria)
    assert [v.scope for v in other.property_verdicts if v.model == "n"] == ["robustness-inf"]
    assert other.overall("n").verdict == PASS
    data = summary.to_dict()
    json.dumps(data, allow_nan=False)  # JSON-able without NaN
    assert {g["key"] for g in data["groups"]} == {"robustness-inf", "uncertainty-inf"}


def test_all_failed_group_is_inconclusive_not_fail():
    results = [result(i, None, None, None, status=failed_status("NaN outputs")) for i in range(4)]
    summary = summarize(table_from_results(results), [{"property": "robustness-inf", "radius": 0.01, "min_fraction": 0.5}])
    assert summary.criterion_verdicts[0].verdict == INCONCLUSIVE
    assert summary.groups[0].availability_note() == "4 of 4 inputs failed (NaN outputs: 4)"
    assert set(summary.groups[0].certified_fraction) == {0.0}  # failed inputs never count as safe
    assert summary.groups[0].radius_lower.mean is None


@pytest.mark.parametrize("item, message", [
    ({"property": "robustness", "radius": 0.1}, "missing key 'min_fraction'"),
    ({"property": "robustness", "radius": 0, "min_fraction": 0.5}, "radius must be > 0"),
    ({"property": "robustness", "radius": 0.1, "min_fraction": 1.5}, "min_fraction must be in"),
    ({"property": "robustness", "radius": 0.1, "min_fraction": 0.5, "basis": "vibes"}, "basis must be"),
    ({"property": "robustness", "radius": 0.1, "min_fraction": 0.5, "colour": 1}, "unknown key"),
])
def test_bad_criteria(item, message):
    with pytest.raises(ConfigError, match=rf"criteria\[0\]: .*{message}"):
        parse_criteria([item])


def test_write_tables_is_deterministic_and_round_trips(tmp_path):
    table = table_from_results(TEN + [result(20, 0.1 / 3, 1e-9, None, extra={"b": 1, "a": [1.5]})])
    parquet_a, csv_a = write_tables(table, tmp_path / "a")
    parquet_b, csv_b = write_tables(table.sample(frac=1, random_state=1), tmp_path / "b")  # other row order
    assert parquet_a.read_bytes() == parquet_b.read_bytes()
    assert csv_a.read_bytes() == csv_b.read_bytes()
    assert "0.03333333333333333" in csv_a.read_text()  # floats round-trip exactly
    assert '"{""a"": [1.5], ""b"": 1}"' in csv_a.read_text()  # sorted JSON extra
    for path in (parquet_a, csv_a):
        back = read_table(path)
        pd.testing.assert_frame_equal(evidence(back), evidence(table), check_dtype=False)
        assert back[list(TIMING_COLUMNS)].isna().all().all()  # timings are not evidence: never in the table
    assert not list((tmp_path / "a").glob(".*tmp"))  # atomic: no leftovers
    write_tables(table, tmp_path / "c", stem="m", timings=True)  # ... but kept apart, keyed like the table
    timings = pd.read_csv(tmp_path / "c" / "m.timings.csv", dtype={"input_id": str})
    assert list(timings.columns) == [*KEY_COLUMNS, *TIMING_COLUMNS] and len(timings) == len(table)
    np.testing.assert_allclose(timings["seconds"], normalise_table(table)["seconds"])


def test_empty_table():
    table = aggregate([])
    assert len(table) == 0
    summary = summarize(table, [{"property": "robustness-inf", "radius": 0.01, "min_fraction": 0.5}], models=["m"])
    assert summary.overall("m").verdict == INCONCLUSIVE
    assert summary.criterion_verdicts[0].reason == "no results for robustness-inf"


def test_property_without_criterion_is_not_judged():
    results = TEN + [result(i, 0.05, 0.06, None, norm="2") for i in range(3)]
    summary = summarize(table_from_results(results), [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.5}])
    by_scope = {v.scope: v for v in summary.property_verdicts}
    assert by_scope["robustness-2"].verdict == NO_CRITERION
    assert by_scope["robustness-inf"].verdict == PASS and summary.overall("m").verdict == PASS


def round_trip(summary: AuditSummary) -> AuditSummary:
    """The summary written as <m>.summary.json is written and read back."""
    return AuditSummary.from_dict(json.loads(dumps_json(summary.to_dict())))


@pytest.mark.parametrize("results, criteria, models", [
    (TEN, [{"property": "robustness", "norm": "Linf", "radius": 0.02, "min_fraction": 0.8, "basis": "certified"},
           {"property": "robustness", "radius": 0.02, "min_fraction": 0.7, "basis": "estimate"}], None),
    (TEN + [result(i, 0.05, 0.06, None, prop="uncertainty") for i in range(5)] + [
        result(i, 0.05, 0.06, None, norm="2") for i in range(3)],
     [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.5},
      {"property": "uncertainty-inf", "radius": 0.02, "min_fraction": 0.9, "basis": "estimate"},
      {"property": "reachability", "radius": 0.02, "min_fraction": 0.5, "model": "m"}], ["m", "failed-model"]),
    ([result(i, None, None, None, status=failed_status("NaN outputs")) for i in range(4)],
     [{"property": "robustness-inf", "radius": 0.01, "min_fraction": 0.5}], None),
    ([], [{"property": "robustness-inf", "radius": 0.01, "min_fraction": 0.5}], ["m"]),
    (TEN, [], None),
], ids=["ten", "several-properties-and-models", "all-failed", "empty", "no-criteria"])
def test_summary_round_trips_through_json(results, criteria, models):
    table = table_from_results(results) if results else aggregate([])
    summary = summarize(table, criteria, models=models)
    loaded = round_trip(summary)
    assert loaded.to_dict() == summary.to_dict()
    assert loaded == summary  # the same objects: groups, criteria, verdicts (with their criteria)
    for model in summary.models:
        assert loaded.overall(model) == summary.overall(model)
        assert loaded.for_model(model).to_dict() == summary.for_model(model).to_dict()
    assert loaded.models == summary.models
    for before, after in zip(summary.groups, loaded.groups):
        assert after.key == before.key and after.availability_note() == before.availability_note()
        assert after.radius_lower == before.radius_lower
    for before, after in zip(summary.criterion_verdicts, loaded.criterion_verdicts):
        assert after.label == before.label and after.criterion == before.criterion



def test_group_without_inputs_round_trips():
    """A fraction of no inputs is NaN in memory and null in the JSON, both ways."""
    from dataclasses import replace

    from saferisk.audit import GroupSummary

    group = summarize(table_from_results(TEN), radii=[0.01, 0.02]).groups[0]
    empty = replace(group, n_inputs=0, certified_fraction=[float("nan")] * 2)
    data = json.loads(dumps_json(empty.to_dict()))
    assert data["certified_fraction"] == [None, None] and data["availability_note"] == "no inputs were assessed"
    back = GroupSummary.from_dict(data)
    assert all(v != v for v in back.certified_fraction) and back.to_dict() == empty.to_dict()


def test_default_grid_starts_at_zero_and_is_fine():
    """Curves from r = 0 (where every input with status ok is safe: the ball is x0 itself) in
    DEFAULT_GRID_POINTS steps to max_radius, plus the criteria radii; they survive the JSON."""
    from saferisk.audit.summary import DEFAULT_GRID_POINTS

    summary = summarize(table_from_results(TEN), [{"property": "robustness-inf", "radius": 0.0123, "min_fraction": 0.5}])
    group = summary.groups[0]
    assert group.radii[0] == 0.0 and group.radii[-1] == pytest.approx(0.1)
    assert len(group.radii) == DEFAULT_GRID_POINTS + 2 and 0.0123 in group.radii  # 0 .. 100 steps, the criterion
    assert max(b - a for a, b in zip(group.radii, group.radii[1:])) <= 0.1 / DEFAULT_GRID_POINTS + 1e-12
    # r = 0: the 9 assessed inputs are safe (also 9, whose bound is not certified), the failed one is not
    assert group.certified_fraction[0] == pytest.approx(0.9) and group.estimate_fraction[0] == pytest.approx(0.9)
    assert group.risk_fraction[0] == 0.0
    assert round_trip(summary).to_dict() == summary.to_dict()
    assert dumps_json(round_trip(summary).to_dict()) == dumps_json(summary.to_dict())  # byte-stable


def test_verdict_reasons_name_property_norm_radius_and_unit():
    criteria = [{"property": "robustness", "norm": "inf", "radius": 0.02, "min_fraction": 0.6},
                {"property": "robustness", "norm": "inf", "radius": 0.02, "min_fraction": 0.7, "basis": "estimate"}]
    certified, estimate = summarize(table_from_results(TEN), criteria).criterion_verdicts
    assert certified.reason == ("robustness, L∞ norm: 6 of 10 inputs certified safe within radius 0.02 (input units); "
                                "2 have a witness within 0.02; required: at least 60% of inputs "
                                "(of 10 inputs at most 4 may be not safe)")
    assert estimate.reason == ("robustness, L∞ norm: 7 of 10 inputs estimated safe within radius 0.02 (input units) "
                               "(not a guarantee); 2 have a witness within 0.02; 1 unknown; required: at least 70% "
                               "of inputs (of 10 inputs at most 3 may be not safe)")
    domain = table_from_results([result(i, 0.03, 0.05, None, norm="2", scale="domain") for i in range(3)])
    verdict = summarize(domain, [{"property": "robustness", "radius": 0.02, "min_fraction": 1.0}]).criterion_verdicts[0]
    assert verdict.reason.startswith("robustness, L2 norm: 3 of 3 inputs certified safe within radius 0.02 "
                                     "(fraction of domain width); 0 have a witness")
