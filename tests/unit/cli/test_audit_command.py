"""`saferisk audit`: the terminal verdict table, the report paths, the scratch folder's name,
the config's paths, the progress read from the radius jobs' logs and the rerun command.
(The end-to-end run: tests/workflow/test_workflow_audit_command.py.)"""

from __future__ import annotations

import json
import os
import shutil
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest

from saferisk import layout
from saferisk.audit import summarize, table_from_results
from saferisk.audit.terminal import HEADERS, audit_result_text, format_table, verdict_rows, verdict_table
from saferisk.cli import COMMANDS, main
from saferisk.commands.audit import RadiusJobProgress, choose_workdir, finished_line
from saferisk.commands.init import config_path, find_snakefile, workflow_command
from saferisk.io import atomic_write_json
from saferisk.result import RESULT_FIELDS, RadiusResult, failed_status
from tests.paths import DEMO, REPO


def result(i, lower, estimate, upper, *, prop="robustness", model="m", status="ok", **kw) -> RadiusResult:
    return RadiusResult(input_id=str(i), property=prop, norm="inf", max_radius=0.1, model=model, input_set="test",
                        radius_lower=lower, radius_estimate=estimate, radius_upper=upper, status=status, **kw)


# robustness of m at r = 0.02: inputs 0-5 certified (lower 0.03), 6 and 7 with a witness within
# 0.02, 8 straddling, 9 failed; three witnesses within max_radius 0.1 (6, 7, 8)
ROBUSTNESS = [result(i, 0.03, 0.05, None) for i in range(6)] + [
    result(6, 0.005, 0.03, 0.015), result(7, 0.0, 0.01, 0.012), result(8, 0.01, 0.04, 0.05),
    result(9, None, None, None, status=failed_status("NaN outputs"))]
UNCERTAINTY = [result(i, 0.02, 0.05, 0.06 if i == 0 else None, prop="uncertainty") for i in range(3)]
REACH = [result(i, 0.2, 0.3, None, prop="reachability", model="reg", scale="domain") for i in range(2)]


def summary_of(min_fraction: float = 0.6):
    criteria = [{"property": "robustness", "norm": "inf", "radius": 0.02, "min_fraction": min_fraction},
                {"property": "reachability", "radius": 0.05, "min_fraction": 1.0}]
    return summarize(table_from_results(ROBUSTNESS + UNCERTAINTY + REACH), criteria)


def test_verdict_rows_count_certified_inputs_at_the_criterion_radius_and_witnesses():
    rows = {(r.model, r.property): r for r in verdict_rows(summary_of())}
    robustness = rows["m", "robustness"]
    assert (robustness.norm, robustness.verdict) == ("L∞", "PASS (certified)")
    assert robustness.certified_safe == "6/10 at r = 0.02"
    assert robustness.witnesses == "3/10 within 0.1" and robustness.radii_in == "input units"
    uncertainty = rows["m", "uncertainty"]
    assert (uncertainty.verdict, uncertainty.certified_safe, uncertainty.witnesses) == ("NO CRITERION", "—",
                                                                                          "1/3 within 0.1")
    reach = rows["reg", "reachability"]
    assert reach.certified_safe == "2/2 at r = 0.05" and reach.radii_in == "fraction of domain width"
    assert rows["m", "overall"].verdict == "PASS (certified)" and rows["reg", "overall"].norm == ""
    # one row per (model, property, norm), each model's overall row after its properties
    assert [(r.model, r.property) for r in verdict_rows(summary_of())] == [
        ("m", "robustness"), ("m", "uncertainty"), ("m", "overall"), ("reg", "reachability"), ("reg", "overall")]


def test_table_columns_line_up_and_verdicts_that_do_not_pass_say_why():
    summary = summary_of(min_fraction=0.7)  # 6 certified, 2 witnesses: between 60% and 80%
    rows = verdict_rows(summary)
    lines = format_table(rows).splitlines()
    assert len(lines) == len(rows) + 1
    header = lines[0]
    for line, row in zip(lines[1:], rows):
        assert line.index(row.verdict) == header.index(HEADERS.verdict)
        if row.certified_safe:
            assert line.index(row.certified_safe) == header.index(HEADERS.certified_safe)
        assert line == line.rstrip()
    text = verdict_table(summary)
    notes = [line for line in text.splitlines() if line.startswith("  m INCONCLUSIVE: ")]
    assert len(notes) == 1 and "6 of 10 inputs certified safe" in notes[0]
    assert "reg INCONCLUSIVE" not in text and "certified safe: inputs whose certified lower bound" in text


def test_audit_result_text_prints_the_table_and_each_existing_report_once(tmp_path):
    assert audit_result_text(tmp_path, ["m", "reg"]) == ""
    for path in (layout.model_report("m"), layout.model_report("m", "html"), layout.summary_report(),
                 layout.model_report("old_model")):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"%PDF")
    reports_only = audit_result_text(tmp_path, ["m", "reg"])
    assert "saferisk verdicts" not in reports_only
    assert reports_only.splitlines() == ["saferisk reports:", f"  {tmp_path / layout.model_report('m')}",
                                         f"  {tmp_path / layout.model_report('m', 'html')}",
                                         f"  {tmp_path / layout.summary_report()}"]
    atomic_write_json(tmp_path / layout.audit_summary(), summary_of().to_dict())
    text = audit_result_text(tmp_path, ["m", "reg"])
    assert text.startswith(f"saferisk verdicts ({tmp_path / layout.audit_summary()}):\n")
    assert text.endswith(reports_only) and text.count(layout.model_report("m")) == 1
    assert format_table(verdict_rows(summary_of())) in text
    # as seen from where snakemake was started: the working directory itself (plain `snakemake`)
    # or its parent (`snakemake --directory <name>`, as `saferisk audit` prints it)
    assert f"\n  {layout.summary_report()}\n" in audit_result_text(tmp_path, ["m"], shown_from=tmp_path) + "\n"
    from_parent = audit_result_text(tmp_path, ["m"], shown_from=tmp_path.parent)
    assert f"({tmp_path.name}/{layout.audit_summary()})" in from_parent
    assert f"\n  {tmp_path.name}/{layout.model_report('m', 'html')}\n" in from_parent


def test_a_second_audit_of_a_different_config_gets_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = choose_workdir("m", "config A", explicit=False)
    assert first == Path("audits/m")
    (first / "config").mkdir(parents=True)
    (first / "config/config.yaml").write_text("config A")
    assert choose_workdir("m", "config A", explicit=False) == first  # the same audit again: resumed
    assert choose_workdir("m", "config B", explicit=False) == Path("audits/m-2")
    assert choose_workdir("m", "config B", explicit=True) == first  # --name m: that folder, updated


def test_config_paths_start_from_the_audit_folder(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere" / "model.onnx"
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert config_path("data/x.npz", None) == "data/x.npz"
    assert config_path("data/x.npz", Path("audits/m")) == "../../data/x.npz"
    assert config_path(str(project / "data/x.npz"), Path("audits/m")) == "../../data/x.npz"
    assert config_path(str(outside), Path("audits/m")) == str(outside)


def test_progress_counts_inputs_from_whole_log_lines(tmp_path):
    log, table = tmp_path / "shard-0.log", tmp_path / "shard-0.parquet"
    log.write_text("old run [4/4] input 3: lower=0.1\n")
    job = RadiusJobProgress("m robustness", 4, log, table, log_offset=log.stat().st_size, done=0)
    job.read_log()
    assert job.done == 0  # the earlier run's lines are not this run's progress
    with open(log, "a") as handle:
        handle.write("INFO [1/4] input 0: lower=0.1 status=ok\nINFO [2/4] inp")
    job.read_log()
    assert job.done == 1
    with open(log, "a") as handle:
        handle.write("ut 1: lower=0.1 status=ok\n")
    job.read_log()
    assert job.done == 2
    log.write_text("INFO [3/4] input 2: lower=0.1\n")  # a new, shorter log: read from its start
    job.read_log()
    assert job.done == 3 and not job.written_since(0)


def test_finished_job_line_counts_bounds_witnesses_and_failures(tmp_path):
    rows = [r.to_dict() for r in ROBUSTNESS]
    for row in rows:
        row["extra"] = json.dumps(row["extra"])
    table = tmp_path / "shard-0.parquet"
    pd.DataFrame(rows, columns=list(RESULT_FIELDS)).to_parquet(table, index=False)
    job = RadiusJobProgress("m robustness L∞ (test, shard 0)", 10, tmp_path / "x.log", table, 0, 10)
    line = finished_line(job, 2, 3)
    assert line.startswith("[2/3] m robustness L∞ (test, shard 0): 10 inputs, 9 certified lower bounds, "
                           "3 witnesses, 1 failed (")
    assert job.written_since(0)


def test_next_command_works_from_where_it_is_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Snakefile").write_text("")  # not saferisk's: no workflow/rules beside it
    command = workflow_command("--directory audits/m").split()
    assert command[1:] == ["--snakefile", str(REPO / "Snakefile"), "--directory", "audits/m"]
    assert shutil.which(command[0]) or os.access(command[0], os.X_OK), command
    (tmp_path / "workflow/rules").mkdir(parents=True)
    (tmp_path / "workflow/rules/common.smk").write_text("")
    assert find_snakefile() == Path("Snakefile")
    assert workflow_command("--directory audits/m").split()[1:] == ["--directory", "audits/m"]
    # a --factory module lives here, the jobs run in the audit's folder: this directory on PYTHONPATH
    assert workflow_command("--directory audits/m", "net:build").split()[0] == f"PYTHONPATH={tmp_path}"
    assert "PYTHONPATH" not in workflow_command("--configfile c.yaml", "net:build")


def test_audit_is_a_command_and_a_bad_model_is_one_line_with_nothing_written(tmp_path, monkeypatch, capsys):
    assert "audit" in COMMANDS
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    assert main(["audit", "broken.onnx", "--inputs", str(DEMO / "digits_test.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saferisk: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / layout.AUDITS).exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--help"])
    assert exit_info.value.code == 0
    assert "audits/<name>/" in capsys.readouterr().out


def test_init_and_audit_share_their_options():
    from saferisk.cli import build_parser

    parser = build_parser()
    init = vars(parser.parse_args(["init", "m.onnx"]))
    audit = vars(parser.parse_args(["audit", "m.onnx"]))
    shared = set(init) & set(audit) - {"command", "func"}
    assert shared == set(init) - {"command", "func", "out", "force"}
    assert all(init[k] == audit[k] for k in shared)
    assert Namespace(**audit).cores is None
