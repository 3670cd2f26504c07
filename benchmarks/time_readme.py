"""`python benchmarks/time_readme.py`: measure what the README claims about time and effort.

Writes benchmarks/results/readme_times.md (the README quotes it; tests/project/test_docs.py
checks that every duration the README states is one of its measurements). Measured, each in a
fresh copy of HEAD (`git archive`; `--worktree`: the working tree with its edits) that uses
this repository's existing `.venv` (so the install is NOT included; a first `make audit` also
installs, see "install" below):

- the default audit: plain `snakemake` (what `make audit` runs after installing), its jobs,
  and a second `snakemake` with nothing to do;
- the README's "Your own model" paths: `saferisk audit` on the demo MLP (in the default audit's
  copy, after it: its own folder audits/digits_mlp/), and step by step `saferisk init` on the demo
  CNN with init's defaults, `saferisk validate-config`, then `snakemake --directory audits/digits_cnn`;
- from the default audit's table: how many certification searches their work budget ended
  early (`extra.certify_budget_exhausted`) or the clock capped, and the most work one used;
- install: the size on disk of the packages `pip install -e .` installs (from this .venv), and
  with `--download-size` the size of the wheels a first install downloads (pip's dry-run
  resolution as this machine's pip configuration resolves it; remote files sized with one HTTP
  HEAD each), plus PyPI's default torch wheel for comparison.

Not part of `python -m benchmarks` (it runs whole audits): run it by hand, on a quiet machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from saferisk.io import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "readme_times.md"
INIT_MODEL = "saferisk/demo/digits_cnn.onnx"
INIT_INPUTS = "saferisk/demo/digits_test.npz"
AUDIT_MODEL = "saferisk/demo/digits_mlp.onnx"


def duration(seconds: float) -> str:
    """'48 s' under two minutes, else '3 min 5 s': the form the README quotes."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60} s"


@dataclass
class Step:
    what: str
    seconds: float
    detail: str = ""


@dataclass
class Measurements:
    steps: list[Step] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)


def fresh_copy(dest: Path, worktree: bool) -> Path:
    """The repository as a fresh clone of HEAD has it (or, with `worktree`, the working tree's
    tracked and untracked files), using this repository's .venv."""
    dest.mkdir(parents=True)
    if worktree:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, files):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    else:
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def run(cmd: list[str], cwd: Path, what: str) -> tuple[float, str]:
    # the copy's own saferisk package, not the one the shared .venv's editable install points to
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}):\n{out[-3000:]}")
    return seconds, out


def jobs_done(snakemake_output: str) -> str:
    match = re.findall(r"(\d+) of (\d+) steps \(100%\) done", snakemake_output)
    return f"{match[-1][1]} jobs" if match else "no jobs"


def radius_jobs(snakemake_output: str) -> int:
    match = re.search(r"^compute_radius_shard\s+(\d+)$", snakemake_output, re.M)
    return int(match.group(1)) if match else 0


def budget_facts(workdir: Path) -> list[str]:
    """How the default audit's certification searches ended, from its table and config."""
    import pandas as pd
    import yaml

    table = pd.read_parquet(workdir / "results" / "tables" / "audit.parquet")
    extra = table["extra"].map(lambda e: json.loads(e) if isinstance(e, str) else (e or {}))
    exhausted = int(extra.map(lambda e: bool(e.get("certify_budget_exhausted"))).sum())
    capped = int(extra.map(lambda e: bool(e.get("certify_clock_capped"))).sum())
    work = extra.map(lambda e: e.get("certify_work")).dropna()
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    budgets = sorted({p.get("certify", {}).get("work_budget") for p in config["properties"].values()} - {None})
    return [f"default audit, certification: work budget ended the search early on {exhausted} of {len(table)} "
            f"result rows, the clock cap on {capped}; the most work one input used: {int(work.max())} bound passes "
            f"(budget {', '.join(str(b) for b in budgets)})"]


def installed_size(requirement_names: list[str]) -> tuple[int, int]:
    """(bytes on disk of these installed distributions, bytes of torch alone)."""
    total = torch_bytes = 0
    for name in requirement_names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        size = 0
        for file in dist.files or ():
            path = Path(dist.locate_file(file))
            if path.is_file():
                size += path.stat().st_size
        total += size
        if name.lower() == "torch":
            torch_bytes = size
    return total, torch_bytes


def pip_resolution(args: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), *args], cwd=REPO, check=True, capture_output=True)
        return json.loads(report.read_text())["install"]


def file_size(url: str) -> int | None:
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(url[len("file://"):]))
        return path.stat().st_size if path.is_file() else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length else None
    except OSError:
        return None


def audit_requirements() -> list[str]:
    return [i["metadata"]["name"] for i in pip_resolution(["-e", "."]) if i["metadata"]["name"] != "saferisk"]


def install_facts(download: bool) -> list[str]:
    names = audit_requirements()
    total, torch_bytes = installed_size(names)
    facts = [f"install: `pip install -e .` installs {len(names)} packages, {total / 1e9:.1f} GB of files "
             f"(torch {torch_bytes / 1e9:.2f} GB, as `{metadata.version('torch')}`)"]
    if download:
        items = pip_resolution(["-e", "."])
        sizes = [file_size(i["download_info"]["url"]) for i in items if i["metadata"]["name"] != "saferisk"]
        known = [s for s in sizes if s is not None]
        torch_wheel = next((file_size(i["download_info"]["url"]) for i in items if i["metadata"]["name"] == "torch"), None)
        facts.append(f"install: the wheels a first install downloads here: {sum(known) / 1e6:.0f} MB "
                     f"({len(known)} of {len(sizes)} files sized; torch {torch_wheel / 1e6:.0f} MB)")
        pypi = pip_resolution(["--isolated", "--index-url", "https://pypi.org/simple",
                               f"torch=={metadata.version('torch').split('+')[0]}"])
        pypi_sizes = {i["metadata"]["name"]: file_size(i["download_info"]["url"]) for i in pypi}
        cuda = {n: b for n, b in pypi_sizes.items() if n.startswith(("nvidia", "cuda", "triton"))}
        facts.append(f"install: PyPI's default torch for this platform (the CUDA build): the torch wheel "
                     f"{pypi_sizes['torch'] / 1e6:.0f} MB plus {len(cuda)} CUDA packages it requires "
                     f"({', '.join(sorted(cuda))}), {sum(b or 0 for b in cuda.values()) / 1e9:.1f} GB")
    return facts


def tree_digests(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def audit_command_facts(workdir: Path, output: str, before: dict[str, str]) -> list[str]:
    """What `saferisk audit` left: its reports, its terminal verdict table, and the default
    audit's results/ byte for byte as before (the issue's must-show)."""
    reports = workdir / "audits" / "digits_mlp" / "results" / "reports"
    made = sorted(p.name for p in reports.glob("*") if p.suffix in (".pdf", ".html"))
    untouched = tree_digests(workdir / "results") == before
    assert untouched, "saferisk audit changed the default audit's results/"
    table = "verdict" in output.lower() and "digits_mlp" in output
    return [f"`saferisk audit`: wrote {', '.join(made) or 'no report'} under audits/digits_mlp/results/reports/; "
            f"printed a verdict table: {'yes' if table else 'NO'}; the default audit's results/ "
            f"({len(before)} files) byte-identical afterwards: {'yes' if untouched else 'NO'}"]


def conditions(workdir_note: str) -> list[str]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.lower().startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").is_file() \
        else platform.machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [f"CPU: {cpu}, {cores} cores available, no GPU used (device auto on a CPU-only machine)",
            f"Python {platform.python_version()}, torch {metadata.version('torch')}, snakemake "
            f"{metadata.version('snakemake')}; commit {commit}{' with uncommitted edits' if dirty else ''}",
            f"load average (1, 5, 15 min) at the end: {load} (a loaded or shared machine is slower)",
            workdir_note]


def measure(download: bool, worktree: bool) -> Measurements:
    m = Measurements()
    snakemake = [".venv/bin/snakemake"]
    saferisk = [".venv/bin/saferisk"]
    with tempfile.TemporaryDirectory(prefix="saferisk-readme-") as tmp:
        default = fresh_copy(Path(tmp) / "default", worktree)
        seconds, out = run(snakemake, default, "the default audit")
        m.steps.append(Step("default audit: `snakemake` in a fresh copy (`make audit` without its install)", seconds,
                            jobs_done(out)))
        seconds, out = run(snakemake, default, "the rerun")
        assert "Nothing to be done" in out, out[-2000:]
        m.steps.append(Step("default audit again: `snakemake` with nothing to do", seconds, "0 jobs"))
        m.facts += budget_facts(default)

        before = tree_digests(default / "results")
        seconds, out = run([*saferisk, "audit", AUDIT_MODEL, "--inputs", INIT_INPUTS], default, "saferisk audit")
        m.steps.append(Step("`saferisk audit` on the demo MLP (the README's one command, its defaults)", seconds,
                            "in its own folder audits/digits_mlp/"))
        m.facts += audit_command_facts(default, out, before)

        own = fresh_copy(Path(tmp) / "own", worktree)
        folder = "audits/digits_cnn"
        init_seconds, _ = run([*saferisk, "init", INIT_MODEL, "--inputs", INIT_INPUTS], own, "saferisk init")
        check_seconds, check = run([*saferisk, "validate-config", f"{folder}/config/config.yaml", "--workdir", folder],
                                   own, "validate-config")
        audit_seconds, out = run([*snakemake, "--directory", folder], own, "the init audit")
        m.steps.append(Step("`saferisk init` on the demo CNN (init's defaults)", init_seconds))
        m.steps.append(Step("`saferisk validate-config` of that config", check_seconds,
                            check.splitlines()[0].removeprefix("config OK: ")))
        m.steps.append(Step(f"`snakemake --directory {folder}`", audit_seconds, jobs_done(out)))
        m.steps.append(Step("the three commands of the README's \"Your own model\" step by step, together",
                            init_seconds + check_seconds + audit_seconds))
    m.facts += install_facts(download)
    source = "the working tree (tracked and untracked files)" if worktree else "HEAD (`git archive`)"
    m.conditions = conditions(f"each run once, in a fresh copy of {source} with this repository's existing "
                              ".venv (no install, no download)")
    return m


def markdown(m: Measurements) -> str:
    lines = ["# What the README claims, measured", "",
             "Written by `python benchmarks/time_readme.py` (see its docstring for what it runs).", "",
             "| what | time | detail |", "| --- | --- | --- |"]
    lines += [f"| {s.what} | {duration(s.seconds)} | {s.detail} |" for s in m.steps]
    lines += ["", "Facts:", ""] + [f"- {fact}" for fact in m.facts]
    lines += ["", "Conditions:", ""] + [f"- {c}" for c in m.conditions]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default: {OUT.relative_to(REPO)})")
    parser.add_argument("--download-size", action="store_true",
                        help="also size the wheels a first install downloads (one HTTP HEAD per remote wheel)")
    parser.add_argument("--worktree", action="store_true",
                        help="measure the working tree with its uncommitted edits instead of HEAD")
    args = parser.parse_args(argv)
    text = markdown(measure(args.download_size, args.worktree))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
