"""Radius step: the brackets of a set of inputs for one property and norm.

`radius_brackets` is the one place a property spec (the config's shape, or the one the CLI
builds from its flags) becomes the Property, SearchConfig and CertifyConfig a search uses;
`radius_shard` is the workflow's job around it (load artifact + shard, write the table)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from saferisk.config.runtime import (RADIUS_JOB_BASE_MB, certify_config, certify_memory_limit_mb, domain_object,
                                     property_object, search_config)
from saferisk.data.domain import Domain, effective_domain
from saferisk.data.inputs import InputSet, load_npz_input_set, validate
from saferisk.errors import ModelError
from saferisk.io import atomic_write
from saferisk.steps.runner import log_device

log = logging.getLogger("saferisk.steps")


def radius_brackets(model, data: InputSet, property_spec: dict[str, Any], norm: str, *,
                    model_spec: dict[str, Any] | None = None, domain: Domain | None = None, seed: int = 0,
                    references: InputSet | None = None, witness_path: Path | None = None,
                    witness_ref: str | None = None, key: str = "property", progress: Callable | None = None,
                    certify_memory_limit_mb: int | None = None) -> list:
    """RadiusResults of every row of `data` (checked against the model and the domain).

    property_spec: {kind, params, max_radius, scale, search, certify} as in the config;
    model_spec: the model entry's decision / output_kind / domain; `domain` (explicit) wins
    over the model entry's, which wins over the input set's own (effective_domain).
    certify_memory_limit_mb: the most certification memory `certify.memory_mb: auto` may use
    (a radius job's granted memory less the rest of the job); an explicit memory_mb wins."""
    from saferisk.radius import compute_radii

    model_spec = model_spec or {}
    if domain is None:
        domain = domain_object(model_spec.get("domain"), data.n_features, "domain")
    domain = effective_domain(domain, data.domain, data.n_features)
    data = validate(data, model.n_inputs, model.input_shape, domain)
    prop = property_object(property_spec, model_spec, f"{key}.params")
    refs = None
    if prop.needs_references and references is not None and references.labels is not None:
        refs = (references.X, references.labels, references.ids)
    certify = certify_config(property_spec.get("certify"), f"{key}.certify")
    if certify is not False and certify_memory_limit_mb is not None:
        certify = certify.with_memory_limit(certify_memory_limit_mb)
    return compute_radii(model, data.X, prop, norm, property_spec["max_radius"], domain,
                         labels=data.labels, ids=data.ids, references=refs,
                         scale=property_spec.get("scale", "input"),
                         search=search_config(property_spec.get("search"), f"{key}.search"),
                         certify=certify,
                         seed=int(seed), witness_path=witness_path, witness_ref=witness_ref, progress=progress)


def _log_progress(done: int, total: int, result) -> None:
    log.info("[%d/%d] input %s: lower=%s estimate=%s upper=%s status=%s (%.2fs)", done, total,
             result.input_id, result.radius_lower, result.radius_estimate, result.radius_upper,
             result.status, result.seconds)


def _log_memory(property_spec: dict[str, Any], mem_mb, limit: int | None) -> None:
    """One log line on the certification memory of the job (and a warning where an explicit
    certify.memory_mb exceeds what the job was granted for it)."""
    explicit = (property_spec.get("certify") or {}).get("memory_mb")
    if limit is None:
        return
    if isinstance(explicit, int) and not isinstance(explicit, bool):
        if explicit > limit:
            log.warning("certify.memory_mb %d MiB is more than the job's mem_mb %s MB less %d MB leaves (%d): "
                        "the explicit value is used", explicit, mem_mb, RADIUS_JOB_BASE_MB, limit)
        return
    log.info("certification memory: auto, at most %d MiB (mem_mb %s MB less %d MB for the rest of the job)",
             limit, mem_mb, RADIUS_JOB_BASE_MB)


def _join_shards(paths: Sequence[str]) -> InputSet | None:
    if not paths:
        return None
    sets = [load_npz_input_set(p) for p in paths]
    return InputSet("references", np.concatenate([s.X for s in sets]),
                    labels=None if any(s.labels is None for s in sets) else np.concatenate([s.labels for s in sets]),
                    ids=[i for s in sets for i in s.ids])


def radius_shard(*, model_name: str, model_path: str, manifest_path: str, model_spec: dict[str, Any],
                 input_set: str, shard_path: str, reference_paths: Sequence[str] = (),
                 property_name: str, property_spec: dict[str, Any], norm: str, seed: int, device: str,
                 out_path: str, witness_path: str, witness_ref: str, mem_mb: int | None = None) -> list:
    """Radius brackets of every input of one shard; writes the shard's parquet table atomically.

    mem_mb: the memory the scheduler granted the job (resources.mem_mb); `certify.memory_mb:
    auto` keeps to it less RADIUS_JOB_BASE_MB (each row records the budget it used,
    extra.certify_memory_mb). Fails (ModelError) only when no input of the shard could be
    assessed (e.g. the model gives NaN everywhere); single failed inputs are kept as rows with
    status 'failed: ...'.
    """
    from saferisk.audit.table import table_from_results
    from saferisk.models import load_model
    from saferisk.models.load import resolve_device

    device = resolve_device(device)
    log_device(device)
    manifest = json.loads(Path(manifest_path).read_text())
    model = load_model(model_path, device=device, name=model_name)  # sha256: of the canonical artifact
    if manifest.get("artifact_sha256") not in (None, model.sha256):
        raise ModelError(f"{model_path} does not match {manifest_path} (artifact_sha256); rerun the export")
    limit = certify_memory_limit_mb(mem_mb)
    _log_memory(property_spec, mem_mb, limit)
    start = time.perf_counter()
    results = radius_brackets(model, load_npz_input_set(shard_path), property_spec, norm, model_spec=model_spec,
                              seed=seed, references=_join_shards(reference_paths), witness_path=Path(witness_path),
                              witness_ref=witness_ref, key=f"properties.{property_name}", progress=_log_progress,
                              certify_memory_limit_mb=limit)
    for r in results:
        r.input_set = input_set
        r.property = property_name
    failed = [r for r in results if r.status.startswith("failed")]
    if results and len(failed) == len(results):
        raise ModelError(f"model {model_name}: all {len(results)} inputs of {shard_path} failed "
                         f"({failed[0].status}); see the rows above")
    table = table_from_results(results)
    atomic_write(out_path, lambda tmp: table.to_parquet(tmp, index=False, engine="pyarrow"))
    log.info("done %s/%s/%s-%s %s: %d inputs, %d certified, %d witnesses, %d failed, %.1fs",
             model_name, input_set, property_name, norm, Path(shard_path).stem, len(results),
             sum(r.radius_lower is not None for r in results), sum(r.radius_upper is not None for r in results),
             len(failed), time.perf_counter() - start)
    return results
