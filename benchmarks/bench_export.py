"""Model intake: export of an MLP 784-1024-1024-10 (7.5 MB of float32 weights) from a
state_dict + factory and from ONNX, loading of the canonical artifact, one batched forward pass.

    python -m benchmarks --only export          (or: python benchmarks/bench_export.py)

Goal (issue): export "well under 10 s".
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import BenchReport, Goal, Table  # noqa: E402

NAME = "export"
EXPORT_GOAL_S = 10.0
POLL_ROWS = 1568

FACTORY_SOURCE = '''
import torch
from torch import nn

def make_mlp(sizes=(784, 1024, 1024, 10)):
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
'''


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(quick: bool = False) -> BenchReport:
    from saferisk.models.export import export_model
    from saferisk.models.load import load_model

    repeats = 1 if quick else 3
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = BenchReport(NAME, "Model intake: export and load of a 7.5 MB MLP", quick=quick)
    table = Table(f"MLP 784-1024-1024-10, best of {repeats}",
                  ["source", "export_model (s)", "load_model artifact (s)", "device",
                   f"forward {POLL_ROWS} rows (s)", "max_abs_diff source vs artifact"])
    worst_export = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bench_export_nets.py").write_text(FACTORY_SOURCE)
        sys.path.insert(0, str(tmp))
        try:
            import bench_export_nets

            net = bench_export_nets.make_mlp().eval()
            weights = tmp / "mlp.pth"
            torch.save(net.state_dict(), weights)
            onnx_path = tmp / "mlp.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(net, (torch.zeros(1, 784),), str(onnx_path), dynamo=False, opset_version=17,
                                  input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
            sources = {
                "state_dict + factory": {"path": str(weights), "factory": "bench_export_nets:make_mlp",
                                         "input_shape": [784], "domain": [0, 1]},
                "onnx": {"path": str(onnx_path), "domain": [0, 1]},
            }
            x = torch.rand(POLL_ROWS, 784, generator=torch.Generator().manual_seed(0))
            for label, source in sources.items():
                out = tmp / ("out_" + label.split()[0])
                export_s, manifest = best_of(repeats, lambda: export_model(source, out))
                worst_export = max(worst_export, export_s)
                for device in devices:
                    load_s, model = best_of(repeats, lambda: load_model(out / "model.onnx", device=device))
                    model.forward_flat(x)  # warm-up

                    def forward():
                        model.forward_flat(x)
                        if device == "cuda":
                            torch.cuda.synchronize()
                    fwd_s, _ = best_of(repeats, forward)
                    table.add(label, export_s, load_s, device, fwd_s, manifest["check"]["max_abs_diff"])
        finally:
            sys.path.remove(str(tmp))
            sys.modules.pop("bench_export_nets", None)
    table.notes.append(f"weights file {weights_mb():.1f} MB; export includes reading the source, torch.onnx.export "
                       "(dynamo=False, opset 17) or the opset upgrade, reading the artifact back and comparing it "
                       "with the source on 8 random points of the domain.")
    report.tables.append(table)
    report.goals.append(Goal(f"export of a ~5-8 MB MLP well under {EXPORT_GOAL_S:.0f} s",
                             f"{worst_export:.2f} s (slowest source)", worst_export < EXPORT_GOAL_S))
    report.headlines.append(f"Export of a 7.5 MB MLP to the canonical artifact: {worst_export:.2f} s (goal < 10 s).")
    return report


def weights_mb() -> float:
    return (784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10) * 4 / 1e6


if __name__ == "__main__":
    from benchmarks.common import machine_info

    result = run(quick="--quick" in sys.argv)
    print(result.markdown(machine_info()))
