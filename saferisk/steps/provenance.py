"""What the reports state about how the results were made: audit date, versions, the
algorithm hash, the input sets' digests, the git commit; and the run metadata file."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from saferisk.io import atomic_write_json
from saferisk.steps.inputs import input_set_digest

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Source files whose change must rerun the radius jobs (the algorithm, not the plumbing); its
#: digest is the algorithm hash the reports state.
ALGORITHM_SOURCES = ("search", "bounds", "properties", "radius.py", "norms.py", "norm_names.py", "models/graph.py")
#: What every stage's code runs on: the version its outputs state, the atomic writes and the JSON
#: and npz encodings of every output, the errors, the paths, the lazy imports and the job wrapper.
COMMON_SOURCES = ("__init__.py", "errors.py", "io.py", "layout.py", "lazy.py", "steps/__init__.py", "steps/runner.py")
#: The code behind each workflow stage (package-relative files or folders; COMMON_SOURCES too):
#: a stage's digest is a parameter of its rules, so editing it reruns that stage and what depends
#: on it, nothing else. Every module a stage's job loads is in its digest or an upstream stage's
#: (whose rerun reruns it): tests/workflow/test_workflow.py traces the jobs of a real run.
STAGE_SOURCES = {
    # (bounds: the manifest's certify_memory is a profile of the bound engine's graph)
    "export": ("models", "steps/export.py", "bounds", "norms.py", "norm_names.py", "data/__init__.py",
               "data/domain.py"),
    "inputs": ("data", "steps/inputs.py", "demo/__init__.py"),  # (demo: resolves `demo:` paths)
    "radius": (*ALGORITHM_SOURCES, "models", "data/domain.py", "data/inputs.py", "config/__init__.py",
               "config/runtime.py", "witness_file.py", "result.py", "steps/radius.py", "audit/__init__.py",
               "audit/table.py"),
    "tables": ("audit", "config/__init__.py", "config/criteria.py", "steps/tables.py", "norm_names.py"),
    "reports": ("report", "steps/reports.py", "steps/provenance.py"),
}


def _digest(entries) -> str:
    """sha256 (16 hex) over the sorted source files of `entries` (package-relative)."""
    files = set()
    for entry in entries:
        path = PACKAGE_DIR / entry
        files.update(path.rglob("*.py") if path.is_dir() else [path])
    h = hashlib.sha256()
    for f in sorted(files):
        if f.exists():
            h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def algorithm_hash() -> str:
    """sha256 (16 hex) over the sorted source files of saferisk's search, bounds, properties,
    radius engine, norms and graph executor: the algorithm the reports name."""
    return _digest(ALGORITHM_SOURCES)


@lru_cache(maxsize=None)
def code_digest(stage: str) -> str:
    """The digest of one stage's code (STAGE_SOURCES and COMMON_SOURCES): a param of that stage's rules."""
    return _digest((*COMMON_SOURCES, *STAGE_SOURCES[stage]))


def audit_date(configured: str | None, table_path: str | Path) -> str:
    """The configured audit date, else the UTC date the results table was written (never
    now(): re-rendering unchanged results gives the same bytes)."""
    if configured:
        return str(configured)
    mtime = Path(table_path).stat().st_mtime
    return dt.datetime.fromtimestamp(int(mtime), dt.timezone.utc).date().isoformat()


def versions() -> dict[str, str]:
    """saferisk's version and those of the libraries that shape the results."""
    from importlib import metadata

    from saferisk import __version__

    out = {"saferisk": __version__}
    for dist in ("torch", "snakemake", "onnx", "weasyprint"):
        try:
            out[dist] = metadata.version(dist).split("+")[0]  # as the export manifest states it (no local build tag)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class GitState:
    """The commit of a checkout and whether tracked files differ from it."""

    commit: str | None  # full hex; None: not a git checkout
    dirty: bool | None  # None: unknown (no git executable to compare the files)

    def as_dict(self) -> dict[str, Any]:
        """{'commit', 'dirty'} as the reports and the run metadata state them."""
        if self.commit is None:
            return {"commit": "not a git checkout"}
        return {"commit": self.commit, "dirty": "unknown (git not installed)" if self.dirty is None else self.dirty}


def _git_dir(directory: Path) -> Path | None:
    """The git directory of the checkout holding `directory` (a worktree's .git file followed)."""
    for folder in (directory, *directory.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            text = dot_git.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:"):].strip())
                return target if target.is_absolute() else (folder / target).resolve()
    return None


def _read_head(git_dir: Path) -> str | None:
    """HEAD's commit read from the files (no git executable): a detached hash or a ref, loose or packed."""
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[len("ref:"):].strip()
        common = git_dir / "commondir"
        roots = [git_dir] + ([(git_dir / common.read_text().strip()).resolve()] if common.is_file() else [])
        for root in roots:
            if (root / ref).is_file():
                return (root / ref).read_text().strip()
            if (root / "packed-refs").is_file():
                for line in (root / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except OSError:
        return None
    return None


def git_state(directory: str | Path = ".") -> GitState:
    """The commit of the checkout holding `directory` and whether tracked files were changed
    (`git status`, when git is installed); GitState(None, None) when it is no checkout."""
    directory = Path(directory).resolve()
    git_dir = _git_dir(directory)
    if git_dir is None:
        return GitState(None, None)
    git = shutil.which("git")
    if git:
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}  # status never writes the index
        try:
            commit = subprocess.run([git, "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=True, env=env, timeout=30).stdout.strip()
            status = subprocess.run([git, "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=True, env=env, timeout=60).stdout
            return GitState(commit, bool(status.strip()))
        except (OSError, subprocess.SubprocessError):
            pass  # e.g. a checkout git refuses (safe.directory): the files still name the commit
    commit = _read_head(git_dir)
    return GitState(commit, None) if commit else GitState(None, None)


def input_sets_provenance(manifest_paths: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{input set: {rows, features, sha256, domain}} from the input sets' manifest.json files;
    domain {lower, upper} (per-feature lists) is the prepared set's own, read from its first
    shard (None when it records none)."""
    out = {}
    for path in manifest_paths:
        manifest = json.loads(Path(path).read_text())
        out[str(manifest.get("input_set", Path(path).parent.name))] = {
            "rows": manifest.get("rows"), "features": manifest.get("features"), "sha256": input_set_digest(manifest),
            "domain": _input_set_domain(Path(path).parent, manifest)}
    return out


def _input_set_domain(folder: Path, manifest: dict) -> dict[str, list[float]] | None:
    """The domain a prepared input set's first shard records ({lower, upper}), else None."""
    from saferisk.data.inputs import load_npz_input_set

    shards = manifest.get("shards") or []
    if not shards or not (folder / str(shards[0].get("file", ""))).is_file():
        return None
    domain = load_npz_input_set(folder / str(shards[0]["file"])).domain
    if domain is None:
        return None
    return {"lower": [float(v) for v in domain.lower_array.tolist()],
            "upper": [float(v) for v in domain.upper_array.tolist()]}


def report_provenance(report_options: dict, table_path: str, extra: dict, source_dir: str | Path = ".") -> dict:
    """The provenance block of a report. The git state of `source_dir` (the workflow's checkout)
    is read now, at render time: it is no input of the report rules, so a commit alone reruns
    nothing, and the same results rendered at the same clean commit give the same bytes."""
    return {"audit_date": audit_date(report_options.get("audit_date"), table_path), "versions": versions(),
            "algorithm_hash": algorithm_hash(), "git": git_state(source_dir).as_dict(),
            "title": report_options.get("title"), "organisation": report_options.get("organisation"), **extra}


def write_run_metadata(path: str, info: dict[str, Any], source_dir: str | Path = ".") -> None:
    """Run metadata (start time, host, versions, git commit of `source_dir`): a file no rule
    takes as input. No absolute path: the audit directory may be moved or shared."""
    from saferisk import __version__

    meta = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "user": os.environ.get("USER", ""), "python": platform.python_version(),
            "saferisk_version": __version__, "algorithm_hash": algorithm_hash(),
            "git": git_state(source_dir).as_dict(), **info}
    atomic_write_json(path, meta)
