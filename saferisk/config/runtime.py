"""The runtime objects of a property entry (Property, SearchConfig, CertifyConfig), built with
errors that name the config key. build_plan builds them at parse time, so a bad value stops the
run before any job starts (Snakemake deletes a job's old outputs when it starts it); the radius
jobs build them again from the same specs."""

from __future__ import annotations

import dataclasses
from typing import Any

from saferisk.errors import ConfigError


def _dataclass_from(cls, spec: dict[str, Any], key: str, extra_keys: tuple[str, ...] = ()):
    names = sorted([f.name for f in dataclasses.fields(cls)] + list(extra_keys))
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

    return _dataclass_from(CertifyConfig, spec, key, extra_keys=("enabled",))


RADIUS_JOB_BASE_MB = 2000  # a radius job besides certification: interpreter, torch, model, searches


def radius_job_mem_mb(property_spec: dict[str, Any], attempt: int = 1) -> int:
    """Memory (MB) a radius job of this property asks the scheduler for: its certification
    memory (`certify.memory_mb`, default saferisk.bounds' 2 GiB) plus the rest of the job,
    doubled per retry."""
    certify = dict(property_spec.get("certify") or {})
    if not certify.get("enabled", True):
        return RADIUS_JOB_BASE_MB * attempt
    from saferisk.bounds.engine import DEFAULT_MEMORY_BYTES

    memory_mb = certify.get("memory_mb") or DEFAULT_MEMORY_BYTES >> 20
    return (int(memory_mb) + RADIUS_JOB_BASE_MB) * int(attempt)


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
