"""Packaging consistency: pins in pyproject.toml and environment.yml agree; the CLI installs."""

from __future__ import annotations

from tests.paths import REPO
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = REPO


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", req)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    slurm = _pins(project["optional-dependencies"]["slurm"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep)
    env_pins = _pins([d for d in pip_section if not d.startswith("-")])
    unpinned = [r for r in project["dependencies"] if "==" not in r]
    assert not unpinned, f"unpinned runtime dependencies: {unpinned}"
    for name, version in {**runtime, **slurm}.items():
        assert env_pins.get(name) == version, f"{name}: pyproject {version} vs environment.yml {env_pins.get(name)}"
    extra = sorted(set(env_pins) - set(runtime) - set(slurm))
    assert not extra, f"environment.yml pins packages pyproject does not: {extra}"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "saferisk", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("radius", "reach", "verify", "export", "report", "validate-config", "init"):
        assert command in out.stdout, f"`saferisk {command}` missing from --help"


def test_runtime_dependencies_have_permissive_licences():
    from importlib.metadata import metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copyleft = []
    for name in _pins(project["dependencies"]):
        meta = metadata(name)
        free_text = meta.get("License") or ""
        free_text = free_text if len(free_text) < 200 else ""  # full licence texts mention the GPL in passing
        text = " ".join(filter(None, [free_text, meta.get("License-Expression") or "",
                                      " ".join(c for c in meta.get_all("Classifier") or [] if "License" in c)]))
        if re.search(r"\bA?GPL\b|GNU (Affero )?General Public", text) and not re.search(r"LGPL|Lesser", text):
            copyleft.append(f"{name}: {text[:80]}")
    assert not copyleft, f"copyleft runtime dependencies: {copyleft}"
