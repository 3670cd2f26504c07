"""The graph's convolution (saferisk.models.graph.conv2d): the im2col kernel it takes for small CPU
batches computes what F.conv2d computes, values and input gradients, in float32 and float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saferisk.models.graph import _IM2COL_CONV, SMALL_CONV_MACS, conv2d, conv_multiply_adds


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, c_in, c_out, side, k, stride, padding",
                         [(4, 1, 8, 8, 3, 1, 1), (7, 8, 16, 4, 3, 1, 0), (3, 3, 5, 9, 3, 2, (1, 0)),
                          (2, 16, 32, 32, 1, 2, 0), (1, 1, 8, 8, 3, 1, 1), (16, 16, 16, 32, 3, 1, 1)])
def test_dispatched_convolution_matches_f_conv2d(dtype, batch, c_in, c_out, side, k, stride, padding):
    generator = torch.Generator().manual_seed(batch * 100 + c_in)
    weight = torch.randn(c_out, c_in, k, k, generator=generator, dtype=dtype)
    bias = torch.randn(c_out, generator=generator, dtype=dtype)
    x = torch.rand(batch, c_in, side, side, generator=generator, dtype=dtype)
    padding = padding if isinstance(padding, tuple) else (padding, padding)
    cotangent = None
    results = []
    for convolve in (lambda t: conv2d(t, weight, bias, (stride, stride), padding, (1, 1), 1),
                     lambda t: F.conv2d(t, weight, bias, stride=stride, padding=padding)):
        xx = x.clone().requires_grad_(True)
        y = convolve(xx)
        if cotangent is None:
            cotangent = torch.randn(y.shape, generator=generator, dtype=dtype)
        (grad,) = torch.autograd.grad((y * cotangent).sum(), xx)
        results.append((y, grad))
    (y_ours, g_ours), (y_ref, g_ref) = results
    macs = conv_multiply_adds(batch, weight.shape, (side, side), (stride, stride), padding)
    assert macs == y_ref.numel() * c_in * k * k  # output values x (input channels x kernel cells)
    im2col = _IM2COL_CONV is not None and batch > 1 and macs <= SMALL_CONV_MACS
    # the kernel taken: ATen's im2col (SlowConv2D) for small batches, F.conv2d's own call otherwise
    assert (type(y_ours.grad_fn).__name__ == "SlowConv2DBackward0") == im2col
    # float rounding of sums of c_in * k * k products (summation order differs between kernels)
    tol = (1e-5 if dtype == torch.float32 else 1e-12) * c_in * k * k
    assert y_ours.shape == y_ref.shape
    assert torch.allclose(y_ours, y_ref, rtol=tol, atol=tol)
    assert torch.allclose(g_ours, g_ref, rtol=tol, atol=tol)


def test_groups_and_dilation_go_to_f_conv2d():
    x = torch.rand(4, 4, 8, 8, requires_grad=True)
    grouped = conv2d(x, torch.randn(4, 2, 3, 3), None, (1, 1), (1, 1), (1, 1), 2)
    dilated = conv2d(x, torch.randn(4, 4, 3, 3), None, (1, 1), (2, 2), (2, 2), 1)
    assert type(grouped.grad_fn).__name__ == type(dilated.grad_fn).__name__ == "ConvolutionBackward0"


def test_a_trace_or_an_onnx_export_keeps_f_conv2d():
    """torch.onnx knows no thnn_conv2d: a GraphModule traced or exported keeps the standard op."""
    import io

    from saferisk.models.graph import Graph, GraphModule, Node

    weight, bias = torch.randn(4, 2, 3, 3), torch.randn(4)
    graph = Graph("x", "y", (2, 6, 6), [Node("conv", ["x"], "c", {"weight": weight, "bias": bias},
                                               {"padding": (1, 1, 1, 1)}),
                                          Node("flatten", ["c"], "y")])
    module = GraphModule(graph).eval()
    example = torch.rand(3, 2, 6, 6)
    traced = torch.jit.trace(module, example)
    assert "thnn_conv2d" not in str(traced.inlined_graph)
    buffer = io.BytesIO()
    torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"])
    assert buffer.getvalue()
    assert torch.allclose(traced(example), module(example), rtol=1e-5, atol=1e-5)
