"""Load any supported model source into a `Model` (one internal graph for execution and bounds).

| format        | files                         | how                                                      |
| ------------- | ----------------------------- | -------------------------------------------------------- |
| onnx          | .onnx                         | `read_onnx`                                              |
| torchscript   | .ts, .torchscript, .pt (zip with code/) | `torch.jit.load` -> ONNX in memory -> `read_onnx` |
| torch_export  | .pt2                          | `torch.export.load` -> ONNX in memory -> `read_onnx`     |
| state_dict    | .pt, .pth, .bin               | `torch.load(weights_only=True)` + factory -> ONNX -> ...  |
| safetensors   | .safetensors                  | `safetensors.torch.load_file` + factory -> ONNX -> ...    |

Torch sources are exported with `torch.onnx.export(dynamo=False, opset_version=17)` so that
every format runs through the same reader. Pickles are only ever read with
`torch.load(weights_only=True)`; anything else in them is refused, never executed. TorchScript
and torch.export programs carry their own code, which runs once (on zeros) while tracing:
trust them as you would trust code.
A directory is read as an exported model: `model.onnx` plus its `manifest.json`.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saferisk.errors import ConfigError, ModelError
from saferisk.io import sha256_file
from saferisk.models.formats import FORMATS, TORCH_FORMATS, check_format, infer_format, parse_shape  # noqa: F401
from saferisk.models.graph import Graph, GraphModule
from saferisk.models.model import Model
from saferisk.models.onnx_reader import describe_reader_error, load_onnx_proto, read_onnx

EXPORT_OPSET = 17
ARTIFACT_NAME = "model.onnx"
MANIFEST_NAME = "manifest.json"


@dataclass
class TorchSource:
    """A torch source turned into a module and its in-memory ONNX export."""

    module: torch.nn.Module
    onnx_bytes: bytes
    input_shape: tuple[int, ...]
    format: str


# --------------------------------------------------------------------------- small parsers

def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> CPU; 'auto' -> CUDA when available; otherwise the named device (checked)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device '{device}': {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available")
    return dev


# --------------------------------------------------------------------------- torch sources

def build_from_factory(factory: str | None, factory_kwargs: dict | None, path: Path) -> torch.nn.Module:
    """Call 'package.module:function'(**factory_kwargs) and check it returns an nn.Module."""
    if not factory:
        raise ModelError(f"{path} holds weights only; pass factory='module:function' that builds the network")
    if ":" not in factory:
        raise ConfigError(f"factory '{factory}' must look like 'package.module:function'")
    module_name, func_name = factory.split(":", 1)
    cwd = os.getcwd()
    added = cwd not in sys.path  # the console script does not put the working directory on sys.path
    if added:
        sys.path.append(cwd)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"factory '{factory}' cannot be imported: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        module = func(**(factory_kwargs or {}))
    except TypeError as exc:
        raise ModelError(f"factory '{factory}' rejected its kwargs {factory_kwargs}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"factory '{factory}' returned {type(module).__name__}, not a torch.nn.Module")
    return module


def read_state_dict(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a weights-only torch pickle (anything else is refused)."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable safetensors file: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol N" notes
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused an object: name it, without torch's advice to disable the check
        # (and without its terminal colour codes)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" (it holds {found.group(1)})" if found else ""
        if found or re.search(r"Unsupported (class|global)", text):
            raise ModelError(f"{path}: refused: the file holds Python objects{what}, not only tensors; saferisk "
                             "reads tensor state_dicts (torch.load weights_only=True) and refuses arbitrary "
                             "pickles, which could run code. Save model.state_dict() (or safetensors) and give "
                             "the `factory` that builds the network") from None
        raise ModelError(f"{path}: refused: not a tensor-only torch file: it is damaged, or a plain pickle "
                         "(saferisk refuses arbitrary pickles, which could run code)") from None
    except Exception as exc:  # noqa: BLE001 - RuntimeError, EOFError, OSError... from a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". This is an internal")[0]  # torch appends a paragraph of advice
        raise ModelError(f"{path}: not a readable torch file (corrupt or truncated?): {first}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state_dict (name -> tensor), found {type(obj).__name__}")
    others = sorted({type(v).__name__ for v in obj.values() if not isinstance(v, torch.Tensor)})
    if others:
        raise ModelError(f"{path}: expected a state_dict (name -> tensor), found a dict that also holds "
                         f"{', '.join(others)}")
    return obj


def _load_torch_module(path: Path, fmt: str, factory, factory_kwargs, input_shape):
    """(module, per-sample input shape, example batch size) for a torch source."""
    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable TorchScript archive: {str(exc).splitlines()[0]}") from None
        return module, input_shape, 2
    if fmt == "torch_export":
        try:
            program = torch.export.load(str(path))
            # weights come back on the device they were saved from (a CUDA model's .pt2 on the
            # GPU, or failing without one): everything here runs the source on the CPU
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, "cpu")
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: not a readable torch.export (.pt2) archive: {str(exc).splitlines()[0]}") from None
        example = _export_input_shape(program, path)
        if input_shape is not None and tuple(input_shape) != example[1:]:
            raise ModelError(f"{path}: input_shape {tuple(input_shape)} differs from the exported program's {example[1:]}")
        return program.module(), example[1:], example[0]
    state = read_state_dict(path, fmt)
    module = build_from_factory(factory, factory_kwargs, path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: the state_dict does not fit the factory's network: "
                         f"{' '.join(str(exc).split())[:400]}") from None
    return module, input_shape, 2


def _export_input_shape(program, path: Path) -> tuple[int, ...]:
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise ModelError(f"{path}: the exported program has {len(user_inputs)} inputs; saferisk needs one")
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            val = node.meta.get("val")
            if val is None:
                break
            dims = []
            for d in val.shape:
                try:
                    dims.append(int(d))
                except (TypeError, ValueError):
                    dims.append(2)  # symbolic (dynamic batch)
            return tuple(dims)
    raise ModelError(f"{path}: cannot find the input shape of the exported program")


def module_to_onnx(module: torch.nn.Module, input_shape: tuple[int, ...], batch: int = 2,
                   preserve_mode: bool = False) -> bytes:
    """torch.onnx.export(dynamo=False, opset 17) with a dynamic batch axis, in memory."""
    buffer = io.BytesIO()
    example = torch.zeros((batch, *input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if not preserve_mode:
                module.eval()
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=EXPORT_OPSET,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              training=torch.onnx.TrainingMode.PRESERVE if preserve_mode else torch.onnx.TrainingMode.EVAL,
                              do_constant_folding=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"the torch model could not be exported to ONNX on input shape "
                             f"{(batch, *input_shape)}: {' '.join(str(exc).split())[:400]}") from None
    return buffer.getvalue()


def load_torch_source(path: str | Path, fmt: str, *, factory: str | None = None, factory_kwargs: dict | None = None,
                      input_shape=None) -> TorchSource:
    """A torch source file -> module + ONNX bytes (the same bytes for the same file and versions)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    input_shape = parse_shape(input_shape)
    module, shape, batch = _load_torch_module(path, fmt, factory, factory_kwargs, input_shape)
    if shape is None:
        raise ConfigError(f"{path}: input_shape (per sample, e.g. 1,28,28) is required for {fmt} sources")
    preserve = fmt == "torch_export"
    try:
        onnx_bytes = module_to_onnx(module, shape, batch=batch, preserve_mode=preserve)
    except ModelError:
        if batch == 1:
            raise
        onnx_bytes = module_to_onnx(module, shape, batch=1, preserve_mode=preserve)  # batch-1-only code
    return TorchSource(module, onnx_bytes, tuple(shape), fmt)


# --------------------------------------------------------------------------- public API

@dataclass
class Forward:
    """How a model's forward passes run: saferisk's graph, or onnxruntime when the reader refuses it."""

    graph: Graph | None
    runtime: Any = None  # OnnxRuntimeForward when graph is None
    graph_error: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.input_shape if self.graph is not None else self.runtime.input_shape)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Outputs (float64) of a float32 batch (B, *input_shape) from whichever evaluator runs it."""
        if self.graph is not None:
            with torch.no_grad():
                return GraphModule(self.graph)(torch.from_numpy(x)).double().numpy()
        return self.runtime(x)


def read_forward(onnx_source, *, input_shape=None, output_name: str | None = None,
                 device: torch.device | str = "cpu") -> Forward:
    """The graph of an ONNX model (path or bytes); when the graph reader cannot represent it,
    an onnxruntime evaluator of the same file (forward passes only: search, no certified bounds).
    A model neither can run is an error naming both reasons."""
    from saferisk.models.ort import OnnxRuntimeForward

    shape = parse_shape(input_shape)
    proto = load_onnx_proto(onnx_source)  # parsed once; an unreadable file keeps its own error
    try:
        return Forward(read_onnx(proto, input_shape=shape, output_name=output_name))
    except ModelError as exc:
        error = exc
    data = onnx_source if isinstance(onnx_source, (bytes, bytearray)) else Path(onnx_source).read_bytes()
    try:
        runtime = OnnxRuntimeForward(data, input_shape=shape, output_name=output_name, device=device)
    except ModelError as ort_exc:
        raise ModelError(f"{describe_reader_error(proto, error)}; onnxruntime cannot run it either: {ort_exc}") from None
    try:  # graphs that move the batch dimension: one sample's tensors, checked against onnxruntime
        graph = read_onnx(proto, input_shape=shape, output_name=output_name, per_sample=True)
        check_against_runtime(graph, runtime)
        return Forward(graph)
    except ModelError as exc:
        error = exc
    return Forward(None, runtime, describe_reader_error(proto, error))


CHECK_BATCH = 3  # different inputs in one batch: a per-sample graph that mixes samples disagrees


def check_against_runtime(graph: Graph, runtime) -> None:
    """ModelError unless the graph's outputs match onnxruntime's on a seeded batch of different
    inputs (N(0.5, 0.5^2): the scale of normalised data), to float32 accuracy of the output scale."""
    generator = np.random.default_rng(0)
    x = (0.5 + 0.5 * generator.standard_normal((CHECK_BATCH, *graph.input_shape))).astype(np.float32)
    with torch.no_grad():
        ours = GraphModule(graph)(torch.from_numpy(x)).double().numpy()
    reference = runtime(x)
    scale = 1.0 + float(np.max(np.abs(reference))) if reference.size else 1.0
    if ours.shape != reference.shape or not np.allclose(ours, reference, rtol=0.0, atol=1e-4 * scale):
        raise ModelError("the graph reader's per-sample reading disagrees with onnxruntime "
                         f"(outputs {ours.shape} vs {reference.shape}); the batch dimension is used in a way it cannot follow")


def _matching_manifest(path: Path, sha256: str) -> dict:
    manifest_path = path.parent / MANIFEST_NAME
    if path.name != ARTIFACT_NAME or not manifest_path.is_file():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) and manifest.get("artifact_sha256") == sha256 else {}


def load_model(path: str | Path, device: str | torch.device | None = None, *, format: str | None = None,
               factory: str | None = None, factory_kwargs: dict | None = None, input_shape=None,
               output_kind: str | None = None, decision: str | None = None, name: str | None = None,
               output_name: str | None = None) -> Model:
    """Load a model file (or an export directory) into a `Model` on `device` (default CPU).

    An exported `model.onnx` whose sibling `manifest.json` records its SHA-256 takes
    output_kind, decision, class_names and domain from the manifest; arguments override them.
    """
    path = Path(path)
    if path.is_dir():
        path = path / ARTIFACT_NAME
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    fmt = check_format(format, path)
    device = resolve_device(device)
    if fmt == "onnx":
        forward = read_forward(path, input_shape=input_shape, output_name=output_name, device=device)
        onnx_bytes = path.read_bytes()
        sha256 = hashlib.sha256(onnx_bytes).hexdigest()  # the file's hash, from the bytes already read
    else:
        source = load_torch_source(path, fmt, factory=factory, factory_kwargs=factory_kwargs, input_shape=input_shape)
        onnx_bytes = source.onnx_bytes
        forward = read_forward(onnx_bytes, device=device)
        sha256 = sha256_file(path)
    manifest = _matching_manifest(path, sha256)
    output_kind = output_kind or manifest.get("output_kind") or "logits"
    decision = decision or manifest.get("decision") or "argmax"
    if output_kind not in ("logits", "probabilities", "regression"):
        raise ConfigError(f"output_kind '{output_kind}' must be logits, probabilities or regression")
    if decision not in ("argmax", "argmin"):
        raise ConfigError(f"decision '{decision}' must be argmax or argmin")
    metadata = {k: manifest[k] for k in ("class_names", "domain", "source") if k in manifest}
    metadata["path"] = str(path)
    default_name = path.parent.name if manifest else path.stem
    return Model(forward.graph, name=name or default_name, sha256=sha256, output_kind=output_kind, decision=decision,
                 metadata=metadata, device=device, runtime=forward.runtime, graph_error=forward.graph_error,
                 onnx_bytes=onnx_bytes, onnx_output=output_name)
