"""The benchmark entry point runs (quick mode, into a tmp folder) and its tables say what they
measured: a broken benchmark script is caught here, not on the next full run. Timing goals are
judged by the full runs (benchmarks/results/), never here."""

from __future__ import annotations

from tests.paths import REPO
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = REPO


@pytest.mark.slow
def test_quick_compare_and_paper_benchmarks_write_sound_tables(tmp_path):
    pytest.importorskip("art", reason="the bench extra (adversarial-robustness-toolbox) is not installed")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--only", "compare",
                           "--only", "paper", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    compare = json.loads((tmp_path / "compare.json").read_text())
    text = (tmp_path / "compare.md").read_text()
    assert "saferisk witness upper" in text and "CLEVER (ART clever_u)" in text and "PGD + bisection" in text
    # soundness against the exact MILP radius: no certified lower bound above it, no witness below it
    summary = next(t for t in compare["tables"] if t["title"].startswith("MLP 64-16-10"))
    header = summary["columns"]
    for row in summary["rows"]:
        unsound = row[header.index("unsound inputs")]
        if row[0].startswith("saferisk"):
            assert unsound in ("-",) or unsound.startswith("0/"), row
    assert (tmp_path / "README_performance.md").read_text().count("**") >= 2
    paper = tmp_path / "paper.md"
    if (ROOT.parent / "shared").is_dir():
        assert "ReLU-NN-5" in paper.read_text()
    assert len(list(tmp_path.glob("fig5_digit*_*.png"))) == 2  # the Figure 5 images go to --results-dir too
    assert not (tmp_path / "workflow.md").exists()  # --only ran only what it named


def test_scaling_benchmark_case_runs_and_reports_its_measurements():
    """One scaling case in its own process (the LSTM, unrolled in saferisk's graph: quick): the
    JSON line the table is made from (a stale call into saferisk once broke every case)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_scaling", "--case", "lstm-5x4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["case"] == "lstm-5x4" and row["evaluator"] == "torch" and row["evaluations"] > 0
    assert row["lower"] is not None and 0 < row["lower"] <= (row["upper"] or float("inf")) and row["peak_mb"] > 0


def test_quick_black_box_benchmark_writes_its_table(tmp_path):
    """The black-box benchmark (quick: one 3x24x24 input per norm, at the default and a small
    budget) runs and fills its table: a witness on every row, on both paths, the small budget
    kept (the radii's goal is the full run's)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--only", "black_box",
                           "--results-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = json.loads((tmp_path / "black_box.json").read_text())["tables"][0]
    header = table["columns"]
    assert len(table["rows"]) == 4
    for row in table["rows"]:
        assert row[header.index("gradient")] is not None and row[header.index("black-box")] is not None, row
        assert row[header.index("rows used")] <= int(str(row[header.index("budget (rows)")]).split()[0]) + 256, row
