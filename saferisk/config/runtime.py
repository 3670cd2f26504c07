"""The runtime objects of a property entry (Property, SearchConfig, CertifyConfig), built with
errors that name the config key. build_plan builds them at parse time, so a bad value stops the
run before any job starts (Snakemake deletes a job's old outputs when it starts it); the radius
jobs build them again from the same specs."""

from __future__ import annotations

import dataclasses
from typing import Any

from saferisk.errors import ConfigError


def _dataclass_from(cls, spec: dict[str, Any], key: str, extra_keys: tuple[str, ...] = (),
                    internal: tuple[str, ...] = ()):
    names = sorted([f.name for f in dataclasses.fields(cls) if f.name not in internal] + list(extra_keys))
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(names)}")
    try:
        return cls(**spec)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def search_config(spec: dict[str, Any], key: str = "search"):
    """saferisk.search.SearchConfig from a property's `search` block."""
    from saferisk.search.config import SearchConfig

    return _dataclass_from(SearchConfig, dict(spec or {}), key)


def certify_config(spec: dict[str, Any], key: str = "certify"):
    """saferisk.bounds.CertifyConfig from a property's `certify` block; False when `enabled: false`."""
    spec = dict(spec or {})
    if not spec.pop("enabled", True):
        return False
    from saferisk.bounds.config import CertifyConfig

    # memory_limit_mb: set by the radius job from its granted memory, not by the config
    return _dataclass_from(CertifyConfig, spec, key, extra_keys=("enabled",), internal=("memory_limit_mb",))


RADIUS_JOB_BASE_MB = 2000  # a radius job besides certification: interpreter, torch, model, searches


def _manifest_profile(manifest) -> tuple[bool, dict[str, Any] | None]:
    """(known, profile): the model's certification memory profile from its manifest (a dict or
    the path of manifest.json). Not known while the manifest is not written yet (a dry run, a
    DAG built before the export ran: Snakemake evaluates the resources again once the job's
    input exists) or when it predates the field; a null profile is a graph without bounds."""
    if manifest is None:
        return False, None
    if not isinstance(manifest, dict):
        import json
        from pathlib import Path

        try:
            manifest = json.loads(Path(manifest).read_text())
        except (OSError, ValueError):
            return False, None
    if "certify_memory" not in manifest:
        return False, None
    return True, manifest["certify_memory"]


def certify_memory_mb(property_spec: dict[str, Any], manifest=None) -> int | None:
    """Certification memory (MiB) a radius job of this property and model asks for: an explicit
    `certify.memory_mb`; with `auto` (the default) the model's need (saferisk.bounds.memory,
    from the manifest's profile) up to AUTO_CEILING_MB, the ceiling while the manifest is not
    there to read. None when certification is disabled."""
    config = certify_config(property_spec.get("certify"), "certify")
    if config is False:
        return None
    if config.memory_mb is not None:
        return int(config.memory_mb)
    from saferisk.bounds import memory

    known, prof = _manifest_profile(manifest)
    return memory.auto_mb(prof, config) if known else memory.AUTO_CEILING_MB


def radius_job_mem_mb(property_spec: dict[str, Any], attempt: int = 1, manifest=None) -> int:
    """Memory (MB) a radius job of this property asks the scheduler for: its certification
    memory (certify_memory_mb: explicit, or auto from the model's manifest) plus the rest of the
    job (RADIUS_JOB_BASE_MB), doubled per retry."""
    certify = certify_memory_mb(property_spec, manifest)
    return ((certify or 0) + RADIUS_JOB_BASE_MB) * int(attempt)


def certify_memory_limit_mb(granted_mem_mb) -> int | None:
    """The most certification memory `auto` may use in a radius job granted `granted_mem_mb` MB
    (the job's resources.mem_mb: what the rule asked for, or what --set-resources or a cluster
    default made it): the grant less the rest of the job. None when nothing was granted."""
    if granted_mem_mb is None or isinstance(granted_mem_mb, bool):
        return None
    try:
        granted = int(granted_mem_mb)
    except (TypeError, ValueError):
        return None  # e.g. a resource Snakemake could not evaluate yet
    return max(16, granted - RADIUS_JOB_BASE_MB)


def property_object(property_spec: dict[str, Any], model_spec: dict[str, Any], key: str = "params"):
    """The Property of a config entry; robustness takes the model's decision rule."""
    from saferisk.properties import make_property

    params = dict(property_spec.get("params") or {})
    if property_spec["kind"] == "robustness":
        params.setdefault("decision", model_spec.get("decision", "argmax"))
    if property_spec["kind"] == "uncertainty" and model_spec.get("output_kind") == "probabilities":
        params.setdefault("outputs", "probabilities")  # the outputs are p already: no second softmax
    try:
        return make_property({"kind": property_spec["kind"], **params})
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_domain(spec: dict[str, Any] | None, n: int, key: str = "domain") -> None:
    """A ConfigError naming `key` where a {lower, upper} block does not fit n features (the
    checks of `domain_object`, without building the Domain's tensors: the workflow's config
    checks run without torch)."""
    if not spec:
        return
    from saferisk.data.domain import check_bounds
    from saferisk.errors import DataError

    try:
        check_bounds(spec["lower"], spec["upper"], n)
    except DataError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def domain_object(spec: dict[str, Any] | None, n: int, key: str = "domain"):
    """saferisk.data.Domain from a {lower, upper} block (None when the block is empty)."""
    if not spec:
        return None
    from saferisk.data.domain import Domain
    from saferisk.errors import DataError

    try:
        return Domain.from_bounds(spec["lower"], spec["upper"], n)
    except DataError as exc:
        raise ConfigError(f"{key}: {exc}") from None
