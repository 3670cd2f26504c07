"""GPU scaling: per-input time of the search on CPU vs CUDA for an MLP and a CNN at growing
input sizes (digits 8x8 -> MNIST 28x28 -> CIFAR 3x32x32), chunk sizes and peak GPU memory."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.common import BenchReport, Goal, Table, timer, torch_to_model

NAME = "gpu"
SIZES = {"digits 1x8x8": (1, 8, 8), "MNIST 1x28x28": (1, 28, 28), "CIFAR 3x32x32": (3, 32, 32)}
BUDGET = 20_000  # forward evaluations per input, the same on both devices
NOT_MEASURED = "not measured (no CUDA)"


def mlp(shape: tuple[int, ...]) -> nn.Module:
    n = shape[0] * shape[1] * shape[2]
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn(shape: tuple[int, ...]) -> nn.Module:
    c, h, w = shape
    return nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, 10))


def per_input_seconds(model, chunk_size: int, seed: int = 0) -> float:
    """Wall time of the search part of one bracket (estimate + witness; certified bounds off)."""
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius
    from saferisk.search import SearchConfig

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(model.n_inputs, generator=gen, dtype=torch.float64)
    domain = Domain.scalar(0.0, 1.0, model.n_inputs)
    search = SearchConfig(budget=BUDGET, chunk_size=chunk_size)
    warm = SearchConfig(budget=1000, chunk_size=chunk_size)
    compute_radius(model, x0, Robustness(), "inf", 0.03, domain, search=warm, certify=False, seed=seed)  # warm-up
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    with timer() as t:
        compute_radius(model, x0, Robustness(), "inf", 0.03, domain, search=search, certify=False, seed=seed)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
    return t[0]


def run(quick: bool = False) -> BenchReport:
    cuda = torch.cuda.is_available()
    report = BenchReport(NAME, "CPU vs GPU per-input time", quick=quick)
    table = Table(f"Per-input search time (robustness, L-inf 0.03, {BUDGET} forward evaluations)",
                  ["model", "input", "CPU (s)", "GPU (s)", "GPU speed-up", "peak GPU memory (MiB)"])
    speedup_cifar_cnn = None
    measure_cpu = cuda or not quick
    for kind, factory in (("MLP 256x2", mlp), ("CNN 32-64 conv", cnn)):
        for size_name, shape in SIZES.items():
            torch.manual_seed(0)
            module = factory(shape).eval()
            model = torch_to_model(module, shape, f"{kind} {size_name}")
            cpu_s = per_input_seconds(model, 8192) if measure_cpu else None
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                gpu_s = per_input_seconds(model.to("cuda"), 8192)
                peak = torch.cuda.max_memory_allocated() / 2**20
                speed = cpu_s / gpu_s
                if kind.startswith("CNN") and size_name.startswith("CIFAR"):
                    speedup_cifar_cnn = speed
                table.add(kind, size_name, cpu_s, gpu_s, speed, peak)
            else:
                table.add(kind, size_name, cpu_s if cpu_s is not None else "skipped (--quick)", NOT_MEASURED, "-", "-")
    report.tables.append(table)
    if cuda:
        chunks = Table("Chunk size on the GPU (CNN, CIFAR 3x32x32)", ["chunk size", "GPU (s)", "peak GPU memory (MiB)"])
        torch.manual_seed(0)
        model = torch_to_model(cnn((3, 32, 32)).eval(), (3, 32, 32), "cnn cifar").to("cuda")
        for chunk in (1024, 4096, 8192, 32768):
            torch.cuda.reset_peak_memory_stats()
            chunks.add(chunk, per_input_seconds(model, chunk), torch.cuda.max_memory_allocated() / 2**20)
        report.tables.append(chunks)
        report.goals.append(Goal("GPU at least 20x faster than CPU per input on a CIFAR-size CNN",
                                 f"{speedup_cifar_cnn:.1f}x ({torch.cuda.get_device_name(0)})", speedup_cifar_cnn >= 20))
        report.headlines.append(f"GPU ({torch.cuda.get_device_name(0)}) is {speedup_cifar_cnn:.0f}x faster than CPU "
                                "per input on a CIFAR-size CNN.")
    else:
        report.notes.append("No CUDA device on this machine: GPU columns not measured. Run `python -m benchmarks --only gpu` "
                            "on a machine with CUDA to fill them.")
        report.goals.append(Goal("GPU at least 20x faster than CPU per input on a CIFAR-size CNN", NOT_MEASURED, None))
    table.notes.append("Weights are random (seeded): only timing matters here. CPU threads: "
                       f"{torch.get_num_threads()}. Certified bounds are off in this table (search only).")
    return report
