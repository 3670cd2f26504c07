"""`saferisk audit MODEL --inputs DATA`: a first audit in one command, end to end (real
Snakemake, tiny budgets), in its own folder audits/<name>/: the default audit's files are
untouched, the reports exist, the verdict table is printed, and the printed `next:` command
works as printed (a plain snakemake run that prints the same table)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from saferisk import layout
from workflow_support import ROOT, copy_workflow

TINY = ["--max-inputs", "4", "--budget", "300", "--certify-work", "20", "--cores", "2"]
# what a default audit leaves behind (fakes: the test checks they are neither rewritten nor removed)
DEFAULT_AUDIT_FILES = (layout.model_report("digits_mlp"), layout.summary_report(), layout.audit_table("csv"),
                       layout.audit_summary(), layout.model_table("digits_mlp", "summary.json"))


def saferisk(wd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saferisk", *args], cwd=wd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_audit_one_model_in_one_command_leaves_the_default_audit_alone(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "config" / "config.yaml", wd / "config" / "config.yaml")
    (wd / "data").mkdir()
    for name in ("digits_mlp.onnx", "digits_test.npz"):
        shutil.copy2(ROOT / "saferisk" / "demo" / name, wd / "data" / name)
    for i, path in enumerate(DEFAULT_AUDIT_FILES):
        (wd / path).parent.mkdir(parents=True, exist_ok=True)
        (wd / path).write_bytes(f"default audit {i}".encode())
    before = {p: p.read_bytes() for p in sorted(wd.rglob("*")) if p.is_file()}

    proc = saferisk(wd, "audit", "data/digits_mlp.onnx", "--inputs", "data/digits_test.npz", *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    audit = wd / layout.scratch_audit("digits_mlp")
    # the default audit: every file byte-identical, nothing new beside it (no results/, logs/, .snakemake/ writes)
    after = {p: p.read_bytes() for p in sorted(wd.rglob("*")) if p.is_file() and not p.is_relative_to(audit)}
    assert after == before
    assert not (wd / "logs").exists() and not (wd / ".snakemake").exists()

    # the scratch audit: its config (paths from its folder), per-job progress, the verdict table, reports
    config = yaml.safe_load((audit / "config/config.yaml").read_text())
    assert config["models"]["digits_mlp"]["source"] == "../../data/digits_mlp.onnx"
    assert config["input_sets"]["inputs"]["path"] == "../../data/digits_test.npz"
    assert "[2/2] digits_mlp " in out and "4 inputs" in out
    assert "model       property     norm  verdict" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("digits_mlp ")]
    assert [row[1] for row in rows] == ["robustness", "uncertainty", "overall"]
    assert rows[0][2] == "L∞" and "at r = 0.02" in " ".join(rows[0])  # init's criterion: max_radius / 5
    pdf = audit / layout.model_report("digits_mlp")
    for path in (pdf, audit / layout.summary_report(), audit / layout.model_report("digits_mlp", "html")):
        assert path.is_file() and out.count(f"  {path.relative_to(wd)}\n") == 1, path
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "digits_mlp" in text and "robustness" in text
    assert "Shell command" not in out + proc.stderr

    # the printed next: command works as printed: a plain snakemake run in the audit's folder
    # (here redoing the summary report removed for it) that prints the same verdict table and each
    # report path once, and no `Shell command: None` per job (a run with nothing to do prints nothing:
    # Snakemake calls no onsuccess handler then)
    command = shlex.split(next(line for line in out.splitlines() if line.startswith("next: "))[len("next: "):])
    assert shutil.which(command[0], path=os.environ.get("PATH")) or os.access(wd / command[0], os.X_OK), command
    (audit / layout.summary_report()).unlink()
    rerun = subprocess.run(command, cwd=wd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "localrule report_summary:" in rerun.stderr and "compute_radius_shard" not in rerun.stderr
    assert "Shell command" not in rerun.stderr
    table = out[out.index("saferisk verdicts"):out.index("saferisk reports:")]
    reports = out[out.index("saferisk reports:"):out.index("config: ")]
    assert rerun.stdout == table + reports
