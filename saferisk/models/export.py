"""Canonical model artifact (`model.onnx`, ONNX opset 17) + `manifest.json` from any source.

    export_model({"path": "net.pt", "factory": "pkg.nets:make", "input_shape": [1, 28, 28],
                  "domain": [0, 1]}, "results/models/net")

* ONNX sources are upgraded to opset 17 and re-serialised; torch sources are the bytes of
  `torch.onnx.export(dynamo=False, opset_version=17)` (deterministic for the same versions).
* The artifact is read back with saferisk's reader and compared with the SOURCE on check inputs
  (the torch module itself; onnxruntime, or `onnx.reference` without it, for ONNX sources):
  max_abs_diff = max |source(x) - saferisk(artifact)(x)| must be <= tolerance * max(1, max |source(x)|).
  Without check inputs, 8 seeded random points of the domain (or N(0, 1)) are used.
* The manifest is sorted JSON without timestamps; re-exporting an unchanged model gives
  byte-identical files, and files whose bytes would not change are not rewritten (mtimes stay,
  so a workflow sees nothing new). Everything is computed and staged in temporary files before
  anything is replaced, so a failed export leaves the old artifact and manifest untouched.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from saferisk.data.domain import Domain
from saferisk.errors import ConfigError, DataError, ModelError
from saferisk.io import dumps_json, sha256_file
from saferisk.models.graph import EXTRA_OPS, Graph
from saferisk.models.load import (ARTIFACT_NAME, EXPORT_OPSET, FORMATS, MANIFEST_NAME, check_format,
                                  load_torch_source, parse_shape, read_forward)
from saferisk.models.onnx_builder import default_opset
from saferisk.models.onnx_reader import load_onnx_proto, upgrade_opset

OUTPUT_KINDS = ("logits", "probabilities", "regression")
DECISIONS = ("argmax", "argmin")
RANDOM_CHECK_ROWS = 8
SOURCE_KEYS = {"path", "name", "format", "factory", "factory_kwargs", "input_shape", "domain", "output_kind",
               "class_names", "decision"}


@dataclass
class ExportSource:
    """The `source` mapping of export_model, validated."""

    path: Path
    format: str
    factory: str | None = None
    factory_kwargs: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    domain: Any = None
    output_kind: str = "logits"
    class_names: list[str] | None = None
    decision: str = "argmax"
    name: str | None = None  # how the manifest names the source (the configured spelling); default: path

    @classmethod
    def from_dict(cls, source: dict) -> "ExportSource":
        if not isinstance(source, dict) or "path" not in source:
            raise ConfigError("model source needs a 'path'")
        unknown = sorted(set(source) - SOURCE_KEYS)
        if unknown:
            raise ConfigError(f"unknown model source key(s) {unknown} (known: {sorted(SOURCE_KEYS)})")
        path = Path(source["path"])
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        output_kind = source.get("output_kind") or "logits"
        decision = source.get("decision") or "argmax"
        if output_kind not in OUTPUT_KINDS:
            raise ConfigError(f"output_kind '{output_kind}' must be one of {', '.join(OUTPUT_KINDS)}")
        if decision not in DECISIONS:
            raise ConfigError(f"decision '{decision}' must be one of {', '.join(DECISIONS)}")
        kwargs = source.get("factory_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ConfigError("factory_kwargs must be a mapping")
        try:
            dumps_json(kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"factory_kwargs must be plain JSON values (they go into the manifest): {exc}") from None
        names = source.get("class_names")
        return cls(path=path, format=check_format(source.get("format"), path), factory=source.get("factory"),
                   factory_kwargs=dict(kwargs), input_shape=parse_shape(source.get("input_shape")),
                   domain=source.get("domain"), output_kind=output_kind,
                   class_names=[str(n) for n in names] if names is not None else None, decision=decision,
                   name=None if source.get("name") is None else str(source["name"]))


# --------------------------------------------------------------------------- source references

def _onnx_reference(onnx_bytes: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """Outputs of the ORIGINAL ONNX model: onnxruntime if installed, else onnx.reference."""
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {input_name: x})[0])
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(load_onnx_proto(onnx_bytes))
        input_name = evaluator.input_names[0]

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(evaluator.run(None, {input_name: x})[0])

    from onnx.helper import tensor_dtype_to_np_dtype

    declared = next(i for i in load_onnx_proto(onnx_bytes).graph.input if i.name == input_name).type.tensor_type
    dims = declared.shape.dim
    dynamic_batch = bool(dims) and not dims[0].HasField("dim_value")
    input_dtype = tensor_dtype_to_np_dtype(declared.elem_type)

    def batched(x: np.ndarray) -> np.ndarray:
        x = x.astype(input_dtype)
        if dynamic_batch:
            return run(x).reshape(x.shape[0], -1).astype(np.float64)
        rows = [run(x[i:i + 1]).reshape(1, -1) for i in range(x.shape[0])]  # files declaring batch 1
        return np.concatenate(rows, axis=0).astype(np.float64)
    return batched


def _torch_reference(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return out.detach().reshape(x.shape[0], -1).double().numpy()  # traced modules can keep requires_grad

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return forward(x)
        except Exception:  # noqa: BLE001 - a module written for batch 1: one row at a time
            return np.concatenate([forward(x[i:i + 1]) for i in range(x.shape[0])], axis=0)
    return run


def _check_rows(check_inputs, n: int, domain: Domain | None) -> tuple[np.ndarray, str]:
    if check_inputs is None:
        gen = torch.Generator().manual_seed(0)
        u = torch.rand(RANDOM_CHECK_ROWS, n, generator=gen, dtype=torch.float64)
        if domain is not None and _finite(domain):
            rows = domain.lower + u * (domain.upper - domain.lower)
        else:
            rows = torch.randn(RANDOM_CHECK_ROWS, n, generator=gen, dtype=torch.float64)
        return rows.numpy(), f"random:{RANDOM_CHECK_ROWS}:seed0"
    x = np.asarray(check_inputs, dtype=np.float64)
    if x.ndim < 1 or x.size % n or x.shape[0] == 0:
        raise DataError(f"check inputs of shape {x.shape} do not match the model's {n} input features")
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    if x.shape[1] != n:
        raise DataError(f"check inputs have {x.shape[1]} features per row, the model has {n}")
    if domain is not None:
        x = domain.check_and_clip(torch.from_numpy(x), what="check input").numpy()
    return x, "given"


def _finite(domain: Domain) -> bool:
    return bool(torch.isfinite(domain.lower).all() and torch.isfinite(domain.upper).all()
                and (domain.upper > domain.lower).all())


def _domain_spec(domain: Any, n: int) -> tuple[Domain | None, dict | None]:
    if domain is None:
        return None, None
    if isinstance(domain, dict):
        lower, upper = domain.get("lower"), domain.get("upper")
    elif isinstance(domain, (list, tuple)) and len(domain) == 2:
        lower, upper = domain
    else:
        raise ConfigError("domain must be [lower, upper] or {lower:, upper:} (scalars or per-feature lists)")
    if lower is None or upper is None:
        raise ConfigError("domain needs both lower and upper")
    def plain(v):
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
        if np.isnan(arr).any():
            raise ConfigError("domain bounds contain NaN")
        values = [None if np.isinf(a) else float(a) for a in arr]
        if any(v is None for v in values):
            raise ConfigError("domain bounds must be finite (JSON has no infinity); leave the domain out instead")
        return values[0] if arr.size == 1 else values
    dom = Domain.from_bounds(lower, upper, n)
    return dom, {"lower": plain(lower), "upper": plain(upper)}


# --------------------------------------------------------------------------- export

@dataclass
class PreparedExport:
    """Everything an export writes, computed before anything is written."""

    artifact: bytes
    manifest: dict
    graph: Graph | None = field(repr=False)  # None: the model runs through onnxruntime


@dataclass
class _Artifact:
    """The canonical artifact of a source, before it is checked."""

    onnx: bytes
    opset: int
    source_sha256: str
    reference: Callable[[np.ndarray], np.ndarray]  # the SOURCE's outputs (B, m) float64
    notes: list[str]


def prepare_export(source: dict, *, check_inputs=None, labels=None, tolerance: float = 1e-5) -> PreparedExport:
    """Build and verify the canonical artifact and its manifest (pure: writes nothing)."""
    spec = ExportSource.from_dict(source)
    artifact = _onnx_artifact(spec) if spec.format == "onnx" else _torch_artifact(spec)
    forward = read_forward(artifact.onnx, input_shape=spec.input_shape if spec.format == "onnx" else None)
    input_shape = forward.input_shape
    n_inputs = int(np.prod(input_shape, dtype=np.int64))
    domain, domain_json = _domain_spec(spec.domain, n_inputs)
    rows, rows_kind = _check_rows(check_inputs, n_inputs, domain)
    got, max_abs_diff = _compare_with_source(spec, artifact, forward, rows, tolerance)
    n_outputs = int(got.shape[1])
    if spec.class_names is not None and len(spec.class_names) != n_outputs:
        raise ConfigError(f"class_names has {len(spec.class_names)} names, the model has {n_outputs} outputs")
    accuracy = _accuracy(got, rows, rows_kind, labels, spec.decision)
    manifest = {
        "artifact": ARTIFACT_NAME,
        "artifact_sha256": _sha256_bytes(artifact.onnx),
        "artifact_opset": artifact.opset,
        "source": {"path": spec.name or str(spec.path), "sha256": artifact.source_sha256, "format": spec.format,
                   "factory": spec.factory, "factory_kwargs": spec.factory_kwargs or None},
        "format": spec.format,
        "input_shape": list(input_shape),
        "n_inputs": n_inputs,
        "n_outputs": n_outputs,
        "domain": domain_json,
        "output_kind": spec.output_kind,
        "class_names": spec.class_names,
        "decision": spec.decision,
        "check": {"inputs": rows_kind, "n_rows": int(rows.shape[0]), "max_abs_diff": max_abs_diff,
                  "tolerance": tolerance, "accuracy": accuracy, "n_labels": None if labels is None else int(rows.shape[0])},
        "graph": _graph_info(forward),
        "notes": artifact.notes,
        "versions": _versions(),
    }
    return PreparedExport(artifact.onnx, manifest, forward.graph)


def _onnx_artifact(spec: ExportSource) -> _Artifact:
    """An ONNX source upgraded to EXPORT_OPSET (kept at its opset, with a note, when the
    converter refuses) and re-serialised; its reference is the original file's outputs."""
    notes: list[str] = []
    original = spec.path.read_bytes()
    proto = load_onnx_proto(spec.path)
    source_opset = default_opset(proto)
    try:
        proto = upgrade_opset(proto, EXPORT_OPSET) if source_opset < EXPORT_OPSET else proto
    except ModelError as exc:
        notes.append(f"kept opset {source_opset}: {exc}")
    if proto.ir_version < 8 and default_opset(proto) >= EXPORT_OPSET:
        proto.ir_version = 8  # opset 17 belongs to IR version 8
    return _Artifact(proto.SerializeToString(), default_opset(proto), _sha256_bytes(original),
                     _onnx_reference(original), notes)


def _torch_artifact(spec: ExportSource) -> _Artifact:
    """A torch source's in-memory ONNX export; its reference is the torch module itself."""
    torch_source = load_torch_source(spec.path, spec.format, factory=spec.factory,
                                     factory_kwargs=spec.factory_kwargs, input_shape=spec.input_shape)
    return _Artifact(torch_source.onnx_bytes, EXPORT_OPSET, sha256_file(spec.path),
                     _torch_reference(torch_source.module), [])


def _compare_with_source(spec: ExportSource, artifact: _Artifact, forward, rows: np.ndarray,
                         tolerance: float) -> tuple[np.ndarray, float]:
    """(the artifact's outputs on the check rows, max |source - artifact|); a ModelError when
    they differ in shape, are not finite, or differ by more than tolerance x max(1, max |source|)."""
    x32 = rows.astype(np.float32).reshape((rows.shape[0], *forward.input_shape))
    try:
        expected = artifact.reference(x32)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{spec.path}: the source model failed on the check inputs: {' '.join(str(exc).split())[:300]}") from None
    got = forward.outputs(x32)
    if expected.shape != got.shape:
        raise ModelError(f"{spec.path}: artifact outputs {got.shape} differ in shape from the source's {expected.shape}")
    if not (np.isfinite(expected).all() and np.isfinite(got).all()):
        raise ModelError(f"{spec.path}: the model gives NaN or infinite outputs on the check inputs")
    max_abs_diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if not np.isfinite(max_abs_diff) or max_abs_diff > tolerance * scale:
        raise ModelError(f"{spec.path}: the artifact differs from the source by {max_abs_diff:.3g} "
                         f"(> tolerance {tolerance:g} x {scale:.3g}) on the check inputs")
    return got, max_abs_diff


def _accuracy(got: np.ndarray, rows: np.ndarray, rows_kind: str, labels, decision: str) -> float | None:
    """Fraction of the given check inputs whose decision is their label (None without labels)."""
    if labels is None:
        return None
    if rows_kind != "given":
        raise DataError("labels need check inputs")
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != rows.shape[0]:
        raise DataError(f"{y.shape[0]} labels for {rows.shape[0]} check inputs")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise DataError(f"labels must be integer class indices, got dtype {y.dtype}")
    predicted = got.argmax(axis=1) if decision == "argmax" else got.argmin(axis=1)
    return float(np.mean(predicted == y.astype(np.int64)))


def _versions() -> dict:
    import onnx

    import saferisk

    return {"saferisk": saferisk.__version__, "torch": torch.__version__.split("+")[0], "onnx": onnx.__version__}


def _graph_info(forward) -> dict:
    """The manifest's `graph` entry: which evaluator runs the model and what it holds."""
    if forward.graph is None:
        return {"evaluator": "onnxruntime", "reader_error": forward.graph_error,
                "onnx_ops": list(forward.runtime.op_types)}
    ops = sorted({node.op for node in forward.graph.nodes})
    return {"evaluator": "torch", "n_nodes": len(forward.graph.nodes), "ops": ops,
            "extra_ops": [op for op in ops if op in EXTRA_OPS]}


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _unchanged(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def write_files(files: dict[Path, bytes]) -> list[Path]:
    """Stage every changed file beside its target, then rename them into place in order.

    A failure while staging leaves every old file untouched; unchanged files are not rewritten.
    Returns the paths that were (re)written.
    """
    staged: list[tuple[Path, str]] = []
    try:
        for path, data in files.items():
            if _unchanged(path, data):
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as exc:
                raise ModelError(f"cannot write the artifact to {path.parent}: {exc.strerror or exc}") from None
            staged.append((path, tmp))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in staged:
            os.replace(tmp, path)
    finally:
        for _, tmp in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [path for path, _ in staged]


def export_model(source: dict, out_dir: str | os.PathLike, *, check_inputs=None, labels=None,
                 tolerance: float = 1e-5) -> dict:
    """Write `out_dir/model.onnx` and `out_dir/manifest.json`; return the manifest.

    source keys: path, format (onnx|torchscript|torch_export|state_dict|safetensors; else from
    the extension), factory ('module:function'), factory_kwargs, input_shape (per sample; needed
    for torch sources), domain ([lo, hi] or {lower, upper}, scalars or per-feature lists),
    output_kind (logits|probabilities|regression), class_names, decision (argmax|argmin).
    """
    prepared = prepare_export(source, check_inputs=check_inputs, labels=labels, tolerance=tolerance)
    return write_export(prepared, out_dir)


def write_export(prepared: PreparedExport, out_dir: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write `out_dir/model.onnx` and `out_dir/manifest.json` (the manifest plus `extra`
    entries) atomically; return the manifest written."""
    manifest = {**prepared.manifest, **(extra or {})}
    out = Path(out_dir)
    write_files({out / ARTIFACT_NAME: prepared.artifact, out / MANIFEST_NAME: dumps_json(manifest).encode()})
    return manifest


__all__ = ["ExportSource", "PreparedExport", "prepare_export", "export_model", "write_export", "FORMATS"]
