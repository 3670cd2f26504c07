"""Export step: a configured model -> canonical model.onnx + manifest.json (byte-identical on
re-export). The CLI's `saferisk export` builds the same source mapping from its flags."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("saferisk.steps")

EXPORT_KEYS = ("source", "format", "factory", "input_shape", "output_kind", "decision", "class_names", "domain")


def export_spec(model_spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a model's config entry its export depends on (the export rule's params: a
    change to `properties` or `input_sets` does not re-export the model; the source's spelling
    does, the manifest names it)."""
    return {key: model_spec.get(key) for key in EXPORT_KEYS}


def export_source(source_path: str, model_spec: dict[str, Any]) -> dict[str, Any]:
    """The source mapping saferisk.models.export takes, from a config entry; the manifest names
    the source as configured (`demo:...` or the path as written), never by a resolved absolute
    path that differs between machines."""
    return {"path": str(source_path), "name": model_spec.get("source") or str(source_path),
            **{key: value for key, value in export_spec(model_spec).items()
               if key != "source" and value is not None and not (key == "format" and value == "auto")}}


def export_step(source: dict[str, Any], out_dir: str, check_inputs=None, labels=None,
                tolerance: float | None = None) -> dict[str, Any]:
    """Export `source` to out_dir/{model.onnx, manifest.json}; with check inputs, the source's
    and the artifact's outputs are compared (and accuracy reported with labels). The manifest
    also holds `certify_memory` (certify_memory_entry)."""
    from saferisk.models.export import prepare_export, write_export

    kwargs: dict[str, Any] = {}
    if check_inputs is not None:
        kwargs.update(check_inputs=check_inputs, labels=labels)
    if tolerance is not None:
        kwargs["tolerance"] = tolerance
    prepared = prepare_export(source, **kwargs)
    return write_export(prepared, out_dir, certify_memory_entry(prepared.graph))


def certify_memory_entry(graph) -> dict[str, Any]:
    """The manifest's `certify_memory`: the graph quantities a radius job's certification memory
    is estimated from (saferisk.bounds.memory.profile; None: the graph has no certified bounds),
    read by the radius rule's mem_mb (saferisk.config.runtime.radius_job_mem_mb)."""
    if graph is None:  # an onnxruntime evaluator: no certified bounds
        return {"certify_memory": None}
    from saferisk.bounds.memory import graph_profile

    return {"certify_memory": graph_profile(graph)}


def export_model_step(model_name: str, model_spec: dict[str, Any], source_path: str, out_dir: str) -> dict[str, Any]:
    """The workflow's export of one configured model."""
    manifest = export_step(export_source(source_path, model_spec), out_dir)
    log.info("exported %s (%s) -> %s/model.onnx", model_name, manifest.get("format"), out_dir)
    return manifest
