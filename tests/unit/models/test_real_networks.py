"""Networks users ship (tests/real_networks.py) are loaded from every format, searched (estimate
and witness, the witness re-checked by onnxruntime on the canonical ONNX file) and, where the
graph reader covers them, certified; the others say which operators keep the lower bound away."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from saferisk.data.domain import Domain
from saferisk.models.graph import GraphModule
from saferisk.models.load import load_model, module_to_onnx, read_forward
from saferisk.properties import Robustness
from saferisk.radius import compute_radius
from saferisk.search import SearchConfig
from saferisk.witness_file import WitnessStore
from tests.real_networks import ARCHITECTURES, build

ort = pytest.importorskip("onnxruntime")

SEARCH = SearchConfig(budget=4000, max_iterations=20, n_random=64, gradient_steps=10, shrink_steps=4)
MAX_RADIUS = 2.0  # the diameter of the [-1, 1] box


def _write(name: str, fmt: str, tmp_path):
    module, shape, evaluator, bounded = build(name)
    if fmt == "onnx":
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(module_to_onnx(module, shape))
    else:
        path = tmp_path / f"{name}.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(module, torch.zeros(2, *shape), check_trace=False), str(path))
    return module, shape, evaluator, bounded, path


def _ort_outputs(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(x.shape[0], -1)


# torch's TorchScript-to-ONNX exporter cannot export a traced nn.MultiheadAttention ("ONNX export of
# transpose for tensor of unknown rank"): such files get a clear error (test below)
TORCHSCRIPT_UNEXPORTABLE = {"vit", "transformer"}
CASES = [(name, fmt) for name in sorted(ARCHITECTURES) for fmt in ("onnx", "torchscript")
         if not (fmt == "torchscript" and name in TORCHSCRIPT_UNEXPORTABLE)]


def test_traced_attention_is_a_clear_error(tmp_path):
    from saferisk.errors import ModelError

    _, shape, _, _, path = _write("vit", "torchscript", tmp_path)
    with pytest.raises(ModelError, match="could not be exported to ONNX"):
        load_model(path, input_shape=shape)


@pytest.mark.parametrize("name, fmt", CASES)
def test_every_architecture_loads_searches_and_rechecks(name, fmt, tmp_path):
    module, shape, evaluator, bounded, path = _write(name, fmt, tmp_path)
    model = load_model(path, input_shape=shape if fmt == "torchscript" else None)
    assert model.evaluator == evaluator
    assert model.input_shape == shape
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = module(x).reshape(64, -1)
    assert torch.allclose(model.forward_flat(x.reshape(64, -1)), expected, atol=1e-4)
    if evaluator == "onnxruntime":
        assert model.graph_error.startswith("the graph reader")
    # x0: the sample closest to a decision change; another class is within the box (radius 2)
    assert expected.argmax(1).unique().numel() > 1, "fixture: the random net decides one class everywhere"
    top2 = expected.topk(2, dim=1).values
    x0 = x[int((top2[:, 0] - top2[:, 1]).argmin())]

    domain = Domain.scalar(-1.0, 1.0, model.n_inputs)
    store = WitnessStore()
    result = compute_radius(model, x0.reshape(-1).double().numpy(), Robustness(), "inf", MAX_RADIUS, domain,
                            search=SEARCH, seed=0, witness_store=store, input_id="0")
    assert result.status == "ok" and result.evaluator == model.evaluator
    assert result.radius_estimate is not None and 0 < result.radius_estimate <= MAX_RADIUS
    assert result.radius_upper is not None, "random weights: a decision change within the box"
    # the witness changes the decision in onnxruntime too (the independent runtime)
    witness = store.arrays["0/witness"].reshape(1, *shape)
    onnx_bytes = module_to_onnx(module, shape)
    z0, zw = _ort_outputs(onnx_bytes, x0[None].numpy()), _ort_outputs(onnx_bytes, witness)
    assert zw.argmax(1)[0] != z0.argmax(1)[0]
    if bounded:
        assert result.radius_lower is not None and 0 < result.radius_lower <= result.radius_upper
    else:
        assert result.radius_lower is None
    if evaluator == "onnxruntime":
        assert result.radius_lower_method.startswith("no certified bound: the graph reader")
    else:  # saferisk's graph: the witness was re-checked in onnxruntime and in float64 too
        assert result.extra["witness_rechecked_by"] == "torch+onnxruntime+float64"
    assert result.extra["witness_margin"] > result.extra["witness_margin_required"] > 0


class RunningTotal(torch.nn.Module):
    """A cumulative sum over the steps (ONNX CumSum: no graph-reader handler): onnxruntime only."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.embed(x).cumsum(1)[:, -1])


def test_onnxruntime_models_name_the_operator_users_wrote(tmp_path):
    path = tmp_path / "total.onnx"
    path.write_bytes(module_to_onnx(RunningTotal().eval(), (5, 4)))
    model = load_model(path)
    assert model.evaluator == "onnxruntime"
    assert "CumSum (node" in model.graph_error and "ConstantOfShape" not in model.graph_error
    with pytest.raises(RuntimeError, match="no gradients"):
        model.forward_flat_grad(torch.zeros(1, model.n_inputs))


def test_a_graph_that_mixes_samples_is_not_read_per_sample(tmp_path):
    """Centring over the batch (x - x.mean(0)) reads per sample as x - x = 0: the check against
    onnxruntime on different inputs catches it and onnxruntime runs the model."""

    class BatchCentred(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.head(x - x.mean(0, keepdim=True))

    path = tmp_path / "centred.onnx"
    path.write_bytes(module_to_onnx(BatchCentred().eval(), (4,)))
    model = load_model(path)
    assert model.evaluator == "onnxruntime"
    assert "disagrees with onnxruntime" in model.graph_error


def test_recurrent_and_attention_graphs_are_read_per_sample_and_match_torch():
    """Time-major ONNX LSTM/GRU/RNN nodes (unrolled) and attention's (T, B*heads, d) reshapes:
    the graph equals the torch module on a batch, its gradients equal torch's."""
    for name in ("bilstm-2layer", "gru", "relu-rnn", "transformer"):
        module, shape, _, _ = build(name)
        forward = read_forward(module_to_onnx(module, shape))
        assert forward.graph is not None, (name, forward.graph_error)
        x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(2), requires_grad=True)
        ours = GraphModule(forward.graph)(x.reshape(6, *shape))
        expected = module(x).reshape(6, -1)
        assert torch.allclose(ours, expected, atol=1e-5), name
        grad_ours, = torch.autograd.grad(ours[:, 0].sum(), x)
        grad_torch, = torch.autograd.grad(expected[:, 0].sum(), x)
        assert torch.allclose(grad_ours, grad_torch, atol=1e-5), name


def _fixed_batch(module, shape, path):
    import onnx

    proto = onnx.load_from_string(module_to_onnx(module, shape))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    path.write_bytes(proto.SerializeToString())
    return path


# torch's exporter has no attention (unflatten, scaled_dot_product_attention) below opset 14
ATTENTION = {"vit", "transformer"}
OPSET_CASES = [(name, opset) for name in sorted(ARCHITECTURES) for opset in (11, 13, 14, 16, 18)
               if not (opset < 14 and name in ATTENTION)]


@pytest.mark.parametrize("name, opset", OPSET_CASES)
def test_every_architecture_is_read_at_opsets_11_to_18(name, opset):
    """What torch.onnx.export emits for each architecture at each opset (decomposed LayerNorm
    below 17, old Softmax/Squeeze/Split forms below 13) reads into a graph equal to the module."""
    import io

    module, shape, evaluator, _ = build(name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, *shape),), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    forward = read_forward(buffer.getvalue())
    assert (forward.graph is not None) == (evaluator == "torch"), forward.graph_error
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(opset)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(GraphModule(forward.graph)(x), module(x).reshape(5, -1), atol=1e-5)


def test_fixed_batch_onnx_file_runs_batched_through_onnxruntime(tmp_path):
    """VNN-COMP-style files declare batch 1: a GRU file is read per sample (saferisk's graph), a
    file the reader cannot represent gets its batch dimension made symbolic in onnxruntime, and
    a graph that hard-codes it (Reshape to [1, -1]) is run row by row."""
    import onnx
    from onnx import helper

    module, shape, _, _ = build("gru")
    model = load_model(_fixed_batch(module, shape, tmp_path / "gru.onnx"))
    assert model.evaluator == "torch"
    x = torch.rand(4, model.n_inputs, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.forward_flat(x), module(x.reshape(4, *shape)), atol=1e-5)
    module = RunningTotal().eval()
    model = load_model(_fixed_batch(module, (5, 4), tmp_path / "fixed.onnx"))
    assert model.evaluator == "onnxruntime" and not model.runtime.row_by_row
    x = torch.rand(4, model.n_inputs, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.forward_flat(x), module(x.reshape(4, 5, 4)).reshape(4, -1), atol=1e-5)

    # hard-coded batch: x (1, 3) -> CumSum (no reader handler) -> Reshape [1, 3]
    nodes = [helper.make_node("CumSum", ["x", "axis"], ["e"]), helper.make_node("Reshape", ["e", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
                              [onnx.numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "s"),
                               onnx.numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")])
    path = tmp_path / "hard.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    model = load_model(path)
    assert model.runtime.row_by_row
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model.forward_flat(x), torch.cumsum(x, 1), rtol=1e-6)


def test_integer_inputs_are_a_clear_error(tmp_path):
    from saferisk.errors import ModelError

    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(12, 2)

        def forward(self, tokens):
            return self.head(self.embed(tokens).flatten(1))

    path = tmp_path / "embed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Embedder().eval(), (torch.zeros(2, 3, dtype=torch.long),), str(path), dynamo=False,
                          input_names=["tokens"], dynamic_axes={"tokens": {0: "batch"}})
    with pytest.raises(ModelError, match="radius over integer inputs"):
        load_model(path)
