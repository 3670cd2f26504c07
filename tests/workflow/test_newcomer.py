"""A newcomer's path, literally: clone the repository, run the README's audit command, find the PDFs.

The test clones the committed HEAD of the repository it runs from (`git rev-parse
--show-toplevel`) into a temporary directory with no `../shared` beside it, reads the audit
command from the README's "Two commands" block and runs it there (`make audit`: system
packages, a fresh `.venv`, the pinned install, then plain `snakemake` on the demo models).
Without root the Makefile's system-package step only names what is missing and goes on; that
is the one step this test lets pass without doing it. It then checks that the reports are real
PDFs in results/reports/, that the run printed where they are, and that running the command
again (and plain `snakemake`) has nothing to do.

Several minutes: a fresh .venv install plus the default audit. Marked slow; it still runs in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXPECTED_REPORTS = ("digits_cnn.pdf", "digits_mlp.pdf", "regression_net.pdf", "summary.pdf")
AUDIT_TIMEOUT_S = 1500


def _repo_root() -> Path | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out.stdout.strip())


def readme_commands(readme_text: str) -> list[str]:
    """The commands of the README's '## Two commands' bash block, without their comments."""
    section = readme_text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README: the 'Two commands' section has no ```bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def _clean_env() -> dict[str, str]:
    """The environment of a new shell: no active virtual environment of the test run."""
    env = dict(os.environ)
    active = env.pop("VIRTUAL_ENV", None)
    venv_bins = {str(Path(sys.prefix) / "bin")}
    if active:
        venv_bins.add(str(Path(active) / "bin"))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p not in venv_bins)
    env.pop("PYTHONPATH", None)
    return env


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=AUDIT_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` failed (exit {proc.returncode}):\n{output[-6000:]}"
    return proc


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_readme_audit_in_a_fresh_clone(tmp_path):
    root = _repo_root()
    if root is None:
        pytest.skip("not running from a git checkout: nothing to clone")
    clone = tmp_path / "saferisk"
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    assert not (tmp_path / "shared").exists()  # the default audit needs nothing beside the repo

    commands = readme_commands((clone / "README.md").read_text(encoding="utf-8"))
    audit = [c for c in commands if c.startswith("make audit")]
    assert audit == ["make audit"], f"README's audit command: {commands}"
    env = _clean_env()

    started = time.monotonic()
    first = _run(audit[0], clone, env)
    first_s = time.monotonic() - started
    output = first.stdout + first.stderr
    print(f"first `{audit[0]}` in a fresh clone: {first_s:.0f} s")

    reports = clone / "results" / "reports"
    found = sorted(p.name for p in reports.glob("*.pdf"))
    assert found == sorted(EXPECTED_REPORTS), f"reports in results/reports/: {found}"
    for name in EXPECTED_REPORTS:
        data = (reports / name).read_bytes()
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:], f"{name} is not a complete PDF"
        assert len(data) > 20_000, f"{name} is only {len(data)} bytes"
    umask = os.umask(0)
    os.umask(umask)
    for path in [*reports.glob("*.pdf"), clone / "results" / "tables" / "audit.csv"]:
        mode = path.stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{path.name} has mode {mode:o}; with umask {umask:03o} expected {0o666 & ~umask:o}"
    assert "results/reports/summary.pdf" in output, "the run did not say where the reports are"
    assert (clone / "results" / "tables" / "audit.csv").is_file()

    # Idempotent: the same command again installs nothing and computes nothing ...
    second = _run(audit[0], clone, env)
    again = second.stdout + second.stderr
    assert "pip install" not in again, f"second `make audit` reinstalled:\n{again[-3000:]}"
    assert "Nothing to be done" in again, f"second `make audit` ran jobs:\n{again[-3000:]}"
    # ... and so does plain `snakemake` in the new environment.
    third = _run(".venv/bin/snakemake", clone, env)
    assert "Nothing to be done" in third.stdout + third.stderr
    assert sorted(p.name for p in reports.glob("*.pdf")) == sorted(EXPECTED_REPORTS)
