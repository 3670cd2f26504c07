"""Convolution kernels on the CPU: saferisk's graph convolution (`saferisk.models.graph.conv2d`: ATen's
im2col kernel for batches below SMALL_CONV_MACS multiply-adds per call, else F.conv2d's oneDNN kernel) against
F.conv2d alone, forward + input gradient (what a gradient step of the witness search runs), on the
layers of the demo digits CNN, a CIFAR ResNet and an ImageNet stem, batches 1 to 64."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks.common import BenchReport, Goal, Table

NAME = "conv"
# (layer, input channels, output channels, image side, kernel, stride, padding)
LAYERS = (("digits CNN conv1", 1, 8, 8, 3, 1, 1), ("digits CNN conv2", 8, 16, 4, 3, 1, 0),
          ("CIFAR stem", 3, 16, 32, 3, 1, 1), ("CIFAR block", 16, 16, 32, 3, 1, 1),
          ("CIFAR stage 2", 32, 32, 16, 3, 1, 1), ("CIFAR stage 3", 64, 64, 8, 3, 1, 1),
          ("CIFAR shortcut 1x1", 16, 32, 32, 1, 2, 0), ("ImageNet stem", 3, 32, 224, 3, 2, 1))
BATCHES = (1, 4, 16, 32, 64)
SLOWER = 1.10  # the dispatch may cost at most this much more than F.conv2d (timing noise)


def _seconds(step, repeats: int) -> float:
    """Smallest mean time of one call over 3 rounds of `repeats` calls (after a warm-up)."""
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def run(quick: bool = False) -> BenchReport:
    from saferisk.models.graph import SMALL_CONV_MACS, conv2d, conv_multiply_adds

    report = BenchReport(NAME, "Convolution kernels: saferisk's dispatch vs F.conv2d (CPU, forward + input gradient)")
    table = Table("Forward + input gradient per call (us), smallest of 3 rounds",
                  ["layer", "batch", "multiply-adds", "kernel", "saferisk (us)", "F.conv2d (us)", "ratio",
                   "max |difference|"])
    generator = torch.Generator().manual_seed(0)
    worst, slower = 0.0, []
    for name, c_in, c_out, side, k, stride, padding in LAYERS:
        weight = torch.randn(c_out, c_in, k, k, generator=generator) / (c_in * k * k) ** 0.5
        bias = torch.randn(c_out, generator=generator)
        for batch in BATCHES[:2] if quick else BATCHES:
            if side * side * batch > 224 * 224 * 4:  # the ImageNet stem: batches 1 and 4
                continue
            x = torch.rand(batch, c_in, side, side, generator=generator)
            macs = conv_multiply_adds(batch, weight.shape, (side, side), (stride, stride), (padding, padding))

            def step(convolve):
                def go():
                    xx = x.clone().requires_grad_(True)
                    y = convolve(xx)
                    taken = type(y.grad_fn).__name__  # SlowConv2DBackward0: ATen's im2col kernel
                    (g,) = torch.autograd.grad(y.sum(), xx)
                    return y.detach(), g, taken
                return go

            ours = step(lambda t: conv2d(t, weight, bias, (stride, stride), (padding, padding), (1, 1), 1))
            theirs = step(lambda t: F.conv2d(t, weight, bias, stride=stride, padding=padding))
            repeats = max(3, min(200, int(2e8 // max(macs, 1))) // (10 if quick else 1))
            t_ours, t_theirs = _seconds(ours, repeats), _seconds(theirs, repeats)
            (y1, g1, taken), (y2, g2, _) = ours(), theirs()
            difference = max(float((y1 - y2).abs().max()), float((g1 - g2).abs().max()))
            ratio = t_ours / t_theirs
            kernel = "im2col" if taken == "SlowConv2DBackward0" else "oneDNN (same call)"
            table.add(name, batch, macs, kernel, t_ours * 1e6, t_theirs * 1e6, ratio, difference)
            if kernel == "im2col":
                worst = max(worst, ratio)
                if ratio > SLOWER:
                    slower.append(f"{name} batch {batch}: {ratio:.2f}")
    table.notes.append(f"im2col: ATen's thnn_conv2d, taken for batches of 2 rows or more at <= {SMALL_CONV_MACS} "
                       "multiply-adds per call (groups 1, no dilation); above it saferisk calls F.conv2d itself (ratio ~1, timing noise)")
    report.tables.append(table)
    report.goals.append(Goal(f"the im2col kernel never more than {SLOWER:.2f}x F.conv2d where saferisk takes it",
                             f"worst ratio {worst:.2f}" + (f" ({'; '.join(slower)})" if slower else ""),
                             not slower))
    return report
