"""Shared pieces of the benchmarks: tables, machine info, result files, model builders.

Protocol of a benchmark module `benchmarks/bench_<name>.py`: it defines
`run(quick: bool = False) -> BenchReport` (a markdown string is accepted too) and raises
`Skip("reason")` when its data (../shared) or hardware (CUDA) is absent.
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Skip(Exception):
    """A benchmark cannot run here (missing ../shared data, no CUDA, optional package absent)."""


def shared_path(*parts: str) -> Path:
    """A file of ../shared, or Skip naming what is missing."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        raise Skip(f"{path} not found (the ../shared reference data are not present beside the repo)")
    return path


# ---------------------------------------------------------------- tables and reports


def fmt(value: Any, digits: int = 4) -> str:
    """Compact cell text: None -> '-', floats with `digits` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{max(digits - 1, 1)}e}"
        return f"{v:.{digits}g}"
    return str(value)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join(" --- " for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        def plain(c):
            if isinstance(c, (np.floating, np.integer)):
                c = c.item()
            if isinstance(c, float) and not np.isfinite(c):
                return None
            return c
        return {"title": self.title, "columns": self.columns, "rows": [[plain(c) for c in r] for r in self.rows],
                "notes": self.notes}


@dataclass
class Goal:
    """A claim the tables are judged by (issue 17), with the measured value and the verdict."""

    text: str
    measured: str
    met: bool | None  # None: not measured here

    def line(self) -> str:
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[self.met]
        return f"- **{verdict}**: {self.text} (measured: {self.measured})"


@dataclass
class BenchReport:
    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)  # one-line claims for README "Performance"
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # extra outputs (images): name -> content
    seconds: float = 0.0
    quick: bool = False

    def markdown(self, machine: dict | None = None) -> str:
        parts = [f"## {self.title}", ""]
        if machine:
            parts += [machine_markdown(machine), ""]
        threads = f" --threads {torch.get_num_threads()}"
        parts.append(f"Command: `python -m benchmarks --only {self.name}{' --quick' if self.quick else ''}{threads}` "
                     f"({self.seconds:.1f} s)\n")
        parts += [t.markdown() for t in self.tables]
        if self.goals:
            parts += ["### Goals", ""] + [g.line() for g in self.goals] + [""]
        if self.notes:
            parts += [f"- {n}" for n in self.notes] + [""]
        if self.files:
            parts += [f"![{f}]({f})" if f.endswith(".png") else f"Per-input data: [{f}]({f})" for f in self.files] + [""]
        return "\n".join(parts)

    def to_dict(self, machine: dict | None = None) -> dict:
        return {"name": self.name, "title": self.title, "quick": self.quick, "seconds": round(self.seconds, 3),
                "machine": machine or {}, "tables": [t.to_dict() for t in self.tables],
                "goals": [{"text": g.text, "measured": g.measured, "met": g.met} for g in self.goals],
                "notes": self.notes, "headlines": self.headlines, "files": list(self.files)}


def write_report(report: BenchReport, results_dir: Path = RESULTS_DIR) -> Path:
    """results/<name>.md (+ <name>.json for the README assembly), written atomically."""
    from saferisk.io import atomic_write_bytes, atomic_write_json

    machine = machine_info()
    path = Path(results_dir) / f"{report.name}.md"
    atomic_write_bytes(path, report.markdown(machine).encode())
    atomic_write_json(Path(results_dir) / f"{report.name}.json", report.to_dict(machine))
    for name, data in sorted(report.files.items()):
        atomic_write_bytes(Path(results_dir) / name, data)
    return path


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import saferisk

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu_model(), "cores": cores, "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "saferisk": getattr(saferisk, "__version__", "unknown"), "os": platform.platform(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def machine_markdown(machine: dict) -> str:
    return (f"Machine: {machine['cpu']} ({machine['cores']} cores available, torch threads "
            f"{machine['torch_threads']}), GPU: {machine['gpu']}; Python {machine['python']}, torch "
            f"{machine['torch']}, numpy {machine['numpy']}, saferisk {machine['saferisk']}; load average "
            f"{machine.get('load_average_1min')} when written (timings on a loaded machine are slower).")


@contextmanager
def timer() -> Iterator[list[float]]:
    """`with timer() as t: ...` then t[0] holds the elapsed seconds."""
    out = [0.0]
    start = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - start


# ---------------------------------------------------------------- models


def dense_model(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], activation: str, name: str = "net",
                output_kind: str = "regression", decision: str = "argmax"):
    """A saferisk Model for the layout h = x @ W + b (activation after every hidden layer)."""
    from saferisk.models.graph import Graph, Node
    from saferisk.models.model import Model

    nodes = []
    current = "input"
    for i, (W, b) in enumerate(zip(weights, biases)):
        W = torch.as_tensor(np.asarray(W, dtype=np.float32))
        b = torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(-1)
        nodes.append(Node("linear", [current], f"fc{i}", {"weight": W.T.contiguous(), "bias": b}))
        current = f"fc{i}"
        if i < len(weights) - 1:
            nodes.append(Node(activation, [current], f"act{i}"))
            current = f"act{i}"
    graph = Graph("input", current, (int(np.asarray(weights[0]).shape[0]),), nodes)
    return Model(graph, name=name, output_kind=output_kind, decision=decision)


def npz_dense_layers(npz: Any, prefix: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """W1, b1, W2, ... of one network in a DeepQuant artefact file (keys `<prefix>W<i>`/`b<i>`)."""
    weights, biases = [], []
    i = 1
    while f"{prefix}W{i}" in npz:
        weights.append(np.asarray(npz[f"{prefix}W{i}"]))
        biases.append(np.asarray(npz[f"{prefix}b{i}"]))
        i += 1
    if not weights:
        raise KeyError(f"no layers with prefix {prefix!r}; keys: {sorted(npz.keys())[:10]}")
    return weights, biases


def load_onnx_model(path: Path, name: str | None = None, decision: str = "argmax"):
    """An ONNX file as a saferisk Model through the project's own reader."""
    from saferisk.models.model import Model

    try:
        from saferisk.models.load import load_model
    except ImportError:
        load_model = None
    if load_model is not None:
        return load_model(path)
    from saferisk.models.onnx_reader import read_onnx

    return Model(read_onnx(path), name=name or Path(path).stem, output_kind="logits", decision=decision)


def demo_model(name: str):
    """A shipped demo ONNX model (saferisk/demo) as a saferisk Model."""
    from saferisk.demo import demo_path

    return load_onnx_model(demo_path(name), name=Path(name).stem)


def digits_test_set() -> tuple[np.ndarray, np.ndarray]:
    from saferisk.demo import demo_path

    with np.load(demo_path("digits_test.npz")) as data:
        return data["X"], data["y"]


def torch_to_model(module: torch.nn.Module, input_shape: tuple[int, ...], name: str):
    """A torch module exported to ONNX in memory and read back: the real intake path."""
    import tempfile

    from saferisk.demo.train import onnx_bytes

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        path.write_bytes(onnx_bytes(module, input_shape))
        return load_onnx_model(path, name=name)
