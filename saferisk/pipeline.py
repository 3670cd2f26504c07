"""The functions each workflow step calls (one per Snakemake rule), composing library pieces.

Every step takes plain values (paths, dicts from the config) and writes its outputs
atomically, so the thin scripts in workflow/scripts/ only unpack `snakemake` and call one of
these. Nothing here imports Snakemake; everything is testable on its own.

    export_model_step     source model  -> results/models/<m>/{model.onnx, manifest.json}
    prepare_input_shard   input set     -> results/inputs/<d>/shard-<k>.npz
    describe_input_set    shards        -> results/inputs/<d>/manifest.json
    radius_shard          model x shard -> results/radii/<m>/<d>/<p>-<norm>/shard-<k>.parquet (+ witnesses)
    aggregate_model       shards of <m> -> results/tables/<m>.parquet + <m>.summary.json
    combine_tables        model tables  -> results/tables/audit.{parquet,csv} + summary.json
    report_model_step / report_summary_step -> results/reports/<m>.pdf, summary.pdf
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from saferisk.config.runtime import certify_config, domain_object, property_object, search_config
from saferisk.errors import ConfigError, DataError, ModelError
from saferisk.io import atomic_write, atomic_write_json, sha256_file

log = logging.getLogger("saferisk.pipeline")
PACKAGE_DIR = Path(__file__).resolve().parent
#: Source files whose change must rerun the radius jobs (the algorithm, not the plumbing).
ALGORITHM_SOURCES = ("search", "bounds", "properties", "radius.py", "norms.py", "models/graph.py")


@lru_cache(maxsize=1)
def algorithm_hash() -> str:
    """sha256 (16 hex) over the sorted source files of saferisk's search, bounds, properties,
    radius engine, norms and graph executor: a radius-job param, so an algorithm change
    reruns the radius jobs and a change elsewhere (reports, CLI) does not."""
    h = hashlib.sha256()
    for entry in ALGORITHM_SOURCES:
        path = PACKAGE_DIR / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
                h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def log_device(device: str) -> None:
    """One log line naming the accelerator (Snakemake's benchmark files have no GPU figures)."""
    import os

    import torch

    if device.startswith("cuda"):
        log.info("device %s: %s, %d visible, CUDA_VISIBLE_DEVICES=%s", device, torch.cuda.get_device_name(torch.device(device)),
                 torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    else:
        log.info("device cpu (%s threads)", torch.get_num_threads())


# ----------------------------------------------------------------------------- job wrapper

def run_step(log_path: str | None, step, /, *, threads: int | None = None, **kwargs):
    """Run one workflow step with its stderr and logging sent to `log_path` (the rule's log).

    A SaferiskError becomes one readable `error: ...` line in the log (and a nonzero exit);
    other exceptions keep their traceback there.
    """
    import sys

    from saferisk.errors import SaferiskError

    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_path, "a", buffering=1, encoding="utf-8")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    try:
        result = step(**kwargs)
    except SaferiskError as exc:
        log.error("error: %s", exc)
        raise SystemExit(f"saferisk: error: {exc} (log: {log_path})") from None
    log.info("step %s finished in %.1fs", step.__name__, time.perf_counter() - start)
    return result


# ----------------------------------------------------------------------------- export

EXPORT_KEYS = ("format", "factory", "input_shape", "output_kind", "decision", "class_names", "domain")


def export_spec(model_spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a model's config entry its export depends on (the export rule's params: a
    change to `properties` or `input_sets` does not re-export the model)."""
    return {key: model_spec.get(key) for key in EXPORT_KEYS}


def export_model_step(model_name: str, model_spec: dict[str, Any], source_path: str, out_dir: str,
                      check_inputs: str | None = None) -> dict[str, Any]:
    """Canonical model.onnx + manifest.json for one configured model (byte-identical on re-export)."""
    from saferisk.models.export import export_model

    source = {"path": str(source_path), **{key: value for key, value in export_spec(model_spec).items()
                                           if value is not None and not (key == "format" and value == "auto")}}
    X = None
    if check_inputs:
        from saferisk.data.inputs import load_npz_input_set

        X = load_npz_input_set(check_inputs).X[:8]
    manifest = export_model(source, out_dir, check_inputs=X) if X is not None else export_model(source, out_dir)
    log.info("exported %s (%s) -> %s/model.onnx", model_name, manifest.get("format"), out_dir)
    return manifest


# ----------------------------------------------------------------------------- inputs

def load_configured_input_set(name: str, spec: dict[str, Any], seeds: dict[str, int], base: str = "."):
    """The whole selected input set of a config entry (before sharding); paths are resolved
    against `base` (the workflow's working directory) or `demo:`."""
    from saferisk.config.peek import read_box, resolve_path
    from saferisk.data import inputs as di

    if spec.get("box") is not None:
        box = read_box(spec["box"], Path(base), f"input_sets.{name}.box")
        box_set = di.box_input_set(box["lower"], box["upper"], name=name)
        n_samples = int(spec.get("samples", 0))
        if n_samples:
            rng = np.random.default_rng(int(seeds.get("samples", 0)))
            lo, hi = box_set.box_lower, box_set.box_upper
            points = lo + rng.random((n_samples, lo.size)) * (hi - lo)
            X = np.concatenate([box_set.X, points])
            ids = ["box"] + [f"sample-{i}" for i in range(n_samples)]
            box_set = di.InputSet(name, X, ids=ids, feature_names=box_set.feature_names, domain=box_set.domain,
                                  source=box_set.source, sha256=box_set.sha256,
                                  box_lower=box_set.box_lower, box_upper=box_set.box_upper)
        return box_set
    fmt = spec.get("format", "auto")
    labels = spec.get("labels")
    kwargs: dict[str, Any] = {"name": name}
    path = resolve_path(spec["path"], Path(base), f"input_sets.{name}.path")
    kind = "png" if path.is_dir() else (fmt if fmt != "auto" else path.suffix.lower().lstrip("."))
    if labels:
        kwargs.update({"npz": {"label_key": labels}, "csv": {"label_column": labels},
                       "png": {"labels_csv": labels}}.get(kind, {}))
    data = di.load_input_set(path, **kwargs)
    selection = spec.get("selection") or {}
    data = di.select(data, first=selection.get("first"), indices=selection.get("indices"),
                     per_class=selection.get("per_class"), seed=int(seeds.get("selection", 0)))
    domain = domain_object(spec.get("domain"), data.n_features, f"input_sets.{name}.domain")
    if domain is not None:
        import dataclasses

        data = dataclasses.replace(data, domain=domain)
    return data


def prepare_input_shard(name: str, spec: dict[str, Any], seeds: dict[str, int], positions: Sequence[int],
                        fingerprint: str, out_path: str) -> int:
    """Write the rows at `positions` (of the unselected source; box: 0 = centre, i = sample i)
    as one shard .npz; `fingerprint` (of those rows, computed at parse time) is re-checked so
    data changed after parsing is an error rather than a silently different shard."""
    from saferisk.config.peek import peek_input_set
    from saferisk.data.inputs import save_npz

    spec = dict(spec)
    if spec.get("box") is not None:
        spec["samples"] = max(positions) if positions else 0
    data = load_configured_input_set(name, {**spec, "selection": None}, seeds)
    if positions and max(positions) >= len(data):
        raise DataError(f"input set '{name}' has {len(data)} rows, the shard needs row {max(positions)}; "
                        f"the data changed since the workflow was parsed: rerun snakemake")
    peek_spec = {**spec, "selection": {"indices": list(positions)}}
    info = peek_input_set(peek_spec, Path("."), seeds, f"input_sets.{name}")
    if info.shard_fingerprint(0, len(positions)) != fingerprint:
        raise DataError(f"input set '{name}': the source data changed while the workflow ran; rerun snakemake")
    shard = data.subset(list(positions))
    save_npz(shard, out_path)
    log.info("input set %s: %d rows (ids %s..%s) -> %s", name, len(shard), shard.ids[0], shard.ids[-1], out_path)
    return len(shard)


def describe_input_set(name: str, shard_paths: Sequence[str], out_path: str) -> dict[str, Any]:
    """manifest.json of a prepared input set: rows, features, label presence, shard hashes."""
    from saferisk.data.inputs import load_npz_input_set

    shards = []
    n_rows = 0
    n_features = None
    has_labels = False
    for path in shard_paths:
        data = load_npz_input_set(path)
        n_rows += len(data)
        n_features = data.n_features
        has_labels = has_labels or data.labels is not None
        shards.append({"file": Path(path).name, "rows": len(data), "sha256": sha256_file(path),
                       "first_id": data.ids[0], "last_id": data.ids[-1]})
    manifest = {"input_set": name, "rows": n_rows, "features": n_features, "labels": has_labels, "shards": shards}
    atomic_write_json(out_path, manifest)
    return manifest


# ----------------------------------------------------------------------------- radius

def _domain_for(model_spec: dict, data, n: int):
    from saferisk.data.domain import Domain

    domain = domain_object(model_spec.get("domain"), n)
    if domain is None:
        domain = data.domain
    if domain is None:
        domain = Domain.scalar(-math.inf, math.inf, n)
    return domain


def radius_shard(*, model_name: str, model_path: str, manifest_path: str, model_spec: dict[str, Any],
                 input_set: str, shard_path: str, reference_paths: Sequence[str] = (),
                 property_name: str, property_spec: dict[str, Any], norm: str, seed: int, device: str,
                 out_path: str, witness_path: str) -> list:
    """Radius brackets of every input of one shard; writes the shard's parquet table atomically.

    Fails (ModelError) only when no input of the shard could be assessed (e.g. the model gives
    NaN everywhere); single failed inputs are kept as rows with status 'failed: ...'.
    """
    from saferisk.audit.table import table_from_results
    from saferisk.data.inputs import load_npz_input_set
    from saferisk.models import load_model
    from saferisk.radius import compute_radii

    device = resolve_device(device)
    log_device(device)
    manifest = json.loads(Path(manifest_path).read_text())
    model = load_model(model_path, device=device, name=model_name)  # sha256: of the canonical artifact
    if manifest.get("artifact_sha256") not in (None, model.sha256):
        raise ModelError(f"{model_path} does not match {manifest_path} (artifact_sha256); rerun the export")
    data = load_npz_input_set(shard_path)
    domain = _domain_for(model_spec, data, data.n_features)
    prop = property_object(property_spec, model_spec, f"properties.{property_name}.params")
    references = None
    if prop.needs_references and reference_paths:
        refs = [load_npz_input_set(p) for p in reference_paths]
        references = (np.concatenate([r.X for r in refs]), np.concatenate([r.labels for r in refs]),
                      [i for r in refs for i in r.ids])
    start = time.perf_counter()

    def progress(done: int, total: int, result) -> None:
        log.info("[%d/%d] input %s: lower=%s estimate=%s upper=%s status=%s (%.2fs)", done, total,
                 result.input_id, result.radius_lower, result.radius_estimate, result.radius_upper,
                 result.status, result.seconds)

    results = compute_radii(model, data.X, prop, norm, property_spec["max_radius"], domain,
                            labels=data.labels, ids=data.ids, references=references,
                            scale=property_spec.get("scale", "input"),
                            search=search_config(property_spec["search"], f"properties.{property_name}.search"),
                            certify=certify_config(property_spec["certify"], f"properties.{property_name}.certify"),
                            seed=int(seed),
                            witness_path=Path(witness_path),
                            witness_ref=f"{input_set}/{property_name}-{norm}/{Path(witness_path).name}",
                            progress=progress)
    for r in results:
        r.input_set = input_set
        r.property = property_name
    failed = [r for r in results if r.status.startswith("failed")]
    if results and len(failed) == len(results):
        raise ModelError(f"model {model_name}: all {len(results)} inputs of {shard_path} failed "
                         f"({failed[0].status}); see the rows above")
    table = table_from_results(results)
    atomic_write(out_path, lambda tmp: table.to_parquet(tmp, index=False, engine="pyarrow"))
    elapsed = time.perf_counter() - start
    certified = sum(r.radius_lower is not None for r in results)
    witnesses = sum(r.radius_upper is not None for r in results)
    log.info("done %s/%s/%s-%s %s: %d inputs, %d certified, %d witnesses, %d failed, %.1fs",
             model_name, input_set, property_name, norm, Path(shard_path).stem, len(results), certified,
             witnesses, len(failed), elapsed)
    return results


# ----------------------------------------------------------------------------- tables

def aggregate_model(model_name: str, shard_paths: Sequence[str], criteria: list[dict], out_dir: str) -> dict:
    """results/tables/<m>.parquet (+ .csv) and <m>.summary.json from one model's radius shards."""
    from saferisk.audit.summary import summarize
    from saferisk.audit.table import aggregate, write_tables

    table = aggregate(shard_paths, expected_shards=shard_paths)
    write_tables(table, out_dir, stem=model_name)
    summary = summarize(table, _criteria_for(criteria), models=[model_name]).to_dict()
    atomic_write_json(Path(out_dir) / f"{model_name}.summary.json", summary)
    log.info("model %s: %d rows from %d shards", model_name, len(table), len(shard_paths))
    return summary


def _criteria_for(criteria: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if v is not None or k in ("norm", "model")} for c in criteria]


def combine_tables(model_tables: Sequence[str], criteria: list[dict], out_dir: str, models: list[str]) -> dict:
    """results/tables/audit.{parquet,csv} + summary.json over every model."""
    import pandas as pd

    from saferisk.audit.summary import summarize
    from saferisk.audit.table import read_table, write_tables

    frames = [read_table(p) for p in model_tables]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_tables(table, out_dir, stem="audit")
    summary = summarize(table, _criteria_for(criteria), models=models).to_dict()
    atomic_write_json(Path(out_dir) / "summary.json", summary)
    return summary


# ----------------------------------------------------------------------------- reports

def _audit_date(report_options: dict, table_path: str) -> str:
    """The configured audit date, else the date the results table was written (never now())."""
    import datetime as dt

    if report_options.get("audit_date"):
        return str(report_options["audit_date"])
    mtime = Path(table_path).stat().st_mtime
    return dt.datetime.fromtimestamp(int(mtime), dt.timezone.utc).date().isoformat()


def input_set_digest(manifest: dict) -> str:
    """One SHA-256 naming an input set's content: its single shard's hash, or the hash of its
    shards' hashes (one per line, in shard order) when it has several."""
    hashes = [str(s.get("sha256", "")) for s in manifest.get("shards", [])]
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _input_sets_provenance(manifest_paths) -> dict:
    out = {}
    for path in manifest_paths:
        manifest = json.loads(Path(path).read_text())
        out[str(manifest.get("input_set", Path(path).parent.name))] = {
            "rows": manifest.get("rows"), "features": manifest.get("features"), "sha256": input_set_digest(manifest)}
    return out


def _provenance(report_options: dict, table_path: str, extra: dict) -> dict:
    from importlib import metadata

    from saferisk import __version__

    versions = {"saferisk": __version__}
    for dist in ("torch", "snakemake", "onnx", "weasyprint"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"audit_date": _audit_date(report_options, table_path), "versions": versions,
            "algorithm_hash": algorithm_hash(), "title": report_options.get("title"),
            "organisation": report_options.get("organisation"), **extra}


def _model_manifest(model_name: str, manifest_path: str, model_spec: dict | None = None) -> dict:
    manifest = json.loads(Path(manifest_path).read_text())
    manifest["name"] = model_name
    if model_spec and model_spec.get("class_names") and not manifest.get("class_names"):
        manifest["class_names"] = model_spec["class_names"]
    return manifest


def report_model_step(*, model_name: str, table_path: str, summary_path: str, manifest_path: str,
                      model_spec: dict, report_options: dict, criteria: list[dict], templates_dir: str,
                      out_path: str, witnesses_root: str | None = None, input_manifest_paths=(),
                      config_sha256: str | None = None) -> str:
    """results/reports/<m>.pdf from the model's table, summary verdicts and manifest."""
    from saferisk import report
    from saferisk.audit.summary import summarize
    from saferisk.audit.table import read_table

    table = read_table(table_path)
    summary = summarize(table, _criteria_for(criteria), models=[model_name])
    manifest = _model_manifest(model_name, manifest_path, model_spec)
    provenance = _provenance(report_options, table_path, {
        "model_source": model_spec.get("source"), "config_sha256": config_sha256,
        "input_sets": _input_sets_provenance(input_manifest_paths)})
    path = report.render_model_report(table, summary, manifest, provenance, out_path, templates_dir=templates_dir,
                                      witnesses_root=witnesses_root or f"results/radii/{model_name}")
    log.info("report %s", path)
    return str(path)


def report_summary_step(*, table_path: str, summary_path: str, manifest_paths: dict[str, str],
                        report_options: dict, criteria: list[dict], templates_dir: str, out_path: str,
                        input_manifest_paths=(), config_sha256: str | None = None) -> str:
    """results/reports/summary.pdf over every model."""
    from saferisk import report
    from saferisk.audit.summary import summarize
    from saferisk.audit.table import read_table

    table = read_table(table_path)
    manifests = {m: _model_manifest(m, p) for m, p in manifest_paths.items()}
    summary = summarize(table, _criteria_for(criteria), models=sorted(manifests))
    provenance = _provenance(report_options, table_path, {
        "config_sha256": config_sha256, "input_sets": _input_sets_provenance(input_manifest_paths)})
    path = report.render_summary_report(table, summary, manifests, provenance, out_path, templates_dir=templates_dir)
    log.info("report %s", path)
    return str(path)


# ----------------------------------------------------------------------------- run metadata

def write_run_metadata(path: str, info: dict[str, Any]) -> None:
    """Run metadata (start time, host, versions): a file no rule takes as input."""
    import datetime as dt
    import os

    from saferisk import __version__

    meta = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "user": os.environ.get("USER", ""), "python": platform.python_version(),
            "saferisk_version": __version__, "algorithm_hash": algorithm_hash(), **info}
    atomic_write_json(path, meta)
