"""Placeholders left in a Snakemake profile: values such as `CHANGE_ME_ACCOUNT` that the shipped
profiles/slurm asks a site to fill in. `saferisk validate-config --profile DIR` reads a profile's
config.yaml; the workflow's onstart checks the resources of the jobs it is about to run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from saferisk.errors import ConfigError

PLACEHOLDER = "CHANGE_ME"
HINT = "fill in your site's value (docs/cluster-guide.md)"


def placeholders(values: Any, key: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every string value containing CHANGE_ME, in document order."""
    if isinstance(values, Mapping):
        return [found for k, v in values.items() for found in placeholders(v, f"{key}.{k}" if key else str(k))]
    if isinstance(values, (list, tuple)):
        return [found for i, v in enumerate(values) for found in placeholders(v, f"{key}[{i}]")]
    if isinstance(values, str) and PLACEHOLDER in values:
        return [(key, values)]
    return []


def profile_file(path: str | Path) -> Path:
    """A profile directory's config.yaml (or the file itself); ConfigError when there is none."""
    path = Path(path)
    file = path / "config.yaml" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"--profile {path}: no profile there (expected a directory with config.yaml)")
    return file


def profile_warnings(path: str | Path) -> list[str]:
    """One warning per placeholder value in a Snakemake profile."""
    file = profile_file(path)
    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return [f"{file}: {key} is still {value!r}: {HINT}" for key, value in placeholders(values)]


def job_resource_warnings(jobs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One warning per placeholder resource value among (rule name, resources) of planned jobs,
    naming the rules that carry it."""
    rules_by_value: dict[tuple[str, str], set[str]] = {}
    for rule, resources in jobs:
        for key, value in placeholders(dict(resources)):
            rules_by_value.setdefault((key, value), set()).add(rule)
    return [f"resource {key}={value!r} (rules {', '.join(sorted(rules))}) is a placeholder from the profile: {HINT}"
            for (key, value), rules in sorted(rules_by_value.items())]
