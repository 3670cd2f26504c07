"""ONNX reader: VNN-COMP networks against onnxruntime, every converted operator, clear errors."""

from __future__ import annotations

from tests.paths import SHARED
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from saferisk.errors import ModelError
from saferisk.models.graph import GraphModule
from saferisk.models.onnx_reader import read_onnx

ort = pytest.importorskip("onnxruntime")



@pytest.fixture(scope="module")
def vnncomp() -> Path:
    root = SHARED / "vnncomp"
    if not root.is_dir():
        pytest.skip("../shared/vnncomp is absent")
    return root


def ort_rows(model_bytes: bytes, x: np.ndarray, batch_one: bool) -> np.ndarray:
    """onnxruntime outputs for rows of x (one row per call when the model declares batch 1)."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if not batch_one:
        return session.run(None, {name: x})[0].reshape(x.shape[0], -1)
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])


def ours(graph, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return GraphModule(graph)(torch.from_numpy(x)).numpy()


# --------------------------------------------------------------------------- VNN-COMP files

@pytest.mark.parametrize("net", ["1_1", "2_1"])
def test_acasxu_matches_onnxruntime_in_one_batched_pass(vnncomp, net):
    path = vnncomp / "acasxu" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    assert onnx.load(str(path)).opset_import[0].version == 8
    graph = read_onnx(path)
    assert graph.input_shape == (1, 1, 5)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (1568, 1, 1, 5)).astype(np.float32)
    got = ours(graph, x)  # ONE forward pass over 1568 points although the file declares batch 1
    assert got.shape == (1568, 5)
    np.testing.assert_allclose(got, ort_rows(path.read_bytes(), x, batch_one=True), atol=1e-5, rtol=0)
    assert {n.op for n in graph.nodes} == {"affine", "flatten", "linear", "relu"}


def test_mnist_256x2_matches_onnxruntime_in_one_batched_pass(vnncomp):
    path = vnncomp / "mnistfc" / "mnist-net_256x2.onnx"
    graph = read_onnx(path)
    assert graph.input_shape == (784, 1) and graph.n_inputs == 784
    x = np.random.default_rng(2).uniform(0, 1, (1568, 784, 1)).astype(np.float32)
    got = ours(graph, x)
    assert got.shape == (1568, 10)
    np.testing.assert_allclose(got, ort_rows(path.read_bytes(), x, batch_one=True), atol=1e-5, rtol=0)
    assert [n.op for n in graph.nodes] == ["flatten", "linear", "relu", "linear", "relu", "linear"]


# --------------------------------------------------------------------------- synthetic graphs

def make_model(nodes, in_shape, out_name="y", inits=(), opset=17, batch="N"):
    """An ONNX model with input 'x' of shape (batch, *in_shape) and one float output."""
    rng_inits = [numpy_helper.from_array(np.asarray(v), name) for name, v in inits]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *in_shape])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], rng_inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset >= 13 else 4
    return model.SerializeToString()


def check_against_ort(model_bytes, in_shape, batch_one=False, lo=-1.0, hi=1.0, rows=6, atol=1e-5):
    graph = read_onnx(model_bytes)
    x = np.random.default_rng(3).uniform(lo, hi, (rows, *in_shape)).astype(np.float32)
    np.testing.assert_allclose(ours(graph, x), ort_rows(model_bytes, x, batch_one), atol=atol, rtol=1e-5)
    return graph


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_gemm_alpha_beta_trans_and_matmul_bias_folding():
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "C1"], ["h"], alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["m"]),
        helper.make_node("Add", ["B2", "m"], ["a"]),          # constant on the left
        helper.make_node("Sub", ["K", "a"], ["y"]),           # const - x
    ]
    model = make_model(nodes, [4], inits=[("W1", rnd(6, 4)), ("C1", rnd(1, 6, seed=1)), ("W2", rnd(6, 3, seed=2)),
                                          ("B2", rnd(3, seed=3)), ("K", rnd(3, seed=4))])
    graph = check_against_ort(model, [4])
    ops = [n.op for n in graph.nodes]
    assert ops == ["linear", "relu", "linear", "affine"]  # MatMul + Add folded into one linear
    assert graph.nodes[2].params["bias"] is not None


def test_bias_is_not_folded_into_a_shared_matmul():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Identity", ["m"], ["i"]),
        helper.make_node("Add", ["i", "c"], ["a"]),           # m is also read by Relu below
        helper.make_node("Relu", ["m"], ["r"]),
        helper.make_node("Concat", ["a", "r"], ["y"], axis=1),
    ]
    graph = check_against_ort(make_model(nodes, [4], inits=[("W", rnd(4, 3)), ("c", rnd(3, seed=1) + 5)]), [4])
    assert [n.op for n in graph.nodes].count("affine") == 1


def test_arithmetic_with_constants_and_residual_add():
    nodes = [
        helper.make_node("Mul", ["x", "S"], ["m"]),
        helper.make_node("Div", ["m", "D"], ["d"]),
        helper.make_node("Sub", ["d", "M"], ["s"]),
        helper.make_node("Neg", ["s"], ["n"]),
        helper.make_node("Tanh", ["n"], ["t"]),
        helper.make_node("Add", ["t", "d"], ["r"]),           # two variables: residual add
        helper.make_node("Sub", ["r", "x"], ["q"]),           # variable - variable
        helper.make_node("Sigmoid", ["q"], ["y"]),
    ]
    model = make_model(nodes, [5], inits=[("S", rnd(5)), ("D", np.float32(3.0)), ("M", rnd(1, 5, seed=5))])
    graph = check_against_ort(model, [5])
    assert {"affine", "add", "tanh", "sigmoid"} <= {n.op for n in graph.nodes}


def test_conv_batchnorm_pools_and_flatten():
    nodes = [
        helper.make_node("Conv", ["x", "W", "Bc"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["l"], alpha=0.1),
        helper.make_node("Pad", ["l", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "W2"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("MaxPool", ["c2"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=0),
        helper.make_node("GlobalAveragePool", ["ap"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["y"], axis=1),
    ]
    inits = [("W", rnd(4, 2, 3, 3)), ("Bc", rnd(4, seed=1)), ("g", rnd(4, seed=2)), ("b", rnd(4, seed=3)),
             ("mu", rnd(4, seed=4)), ("var", np.abs(rnd(4, seed=5)) + 0.5), ("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1])),
             ("W2", rnd(3, 4, 3, 3, seed=6))]
    graph = check_against_ort(make_model(nodes, [2, 9, 9], inits=inits), [2, 9, 9])
    ops = [n.op for n in graph.nodes]
    assert "pad" not in ops and ops.count("conv") == 2  # zero Pad folded into the second Conv
    assert graph.nodes[ops.index("conv", 1)].attrs["padding"] == (1, 1, 1, 1)


def test_conv1d_transpose_squeeze_unsqueeze_softmax():
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1]),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["t", "ax1"], ["u"]),
        helper.make_node("Squeeze", ["u", "ax1"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"], axis=-1),
    ]
    inits = [("W", rnd(3, 2, 3)), ("ax1", np.array([1], dtype=np.int64))]
    graph = check_against_ort(make_model(nodes, [2, 7], inits=inits), [2, 7])
    assert "transpose" in {n.op for n in graph.nodes}


def test_concat_with_constant_clip_and_identity():
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Concat", ["i", "K"], ["c"], axis=1),
        helper.make_node("Clip", ["c", "zero", ""], ["r"]),   # Clip(0, inf) is relu
        helper.make_node("Clip", ["r", "lo", "hi"], ["y"]),   # a real clip stays a clip (an activation)
    ]
    inits = [("K", rnd(1, 2)), ("zero", np.float32(0.0)), ("lo", np.float32(0.1)), ("hi", np.float32(0.6))]
    # ONNX Concat does not broadcast, so such a file declares batch 1; saferisk runs it on any B
    graph = check_against_ort(make_model(nodes, [3], inits=inits, batch=1), [3], batch_one=True)
    assert [n.op for n in graph.nodes] == ["constant", "concat", "relu", "clip"]


def test_slice_gather_and_variable_product():
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),     # x[:, 1:, ::2]
        helper.make_node("Gather", ["x", "i1"], ["g"], axis=1),             # x[:, 1]  (drops the axis)
        helper.make_node("Gather", ["x", "i2"], ["g2"], axis=-1),           # x[:, :, 2:4]
        helper.make_node("Flatten", ["s"], ["sf"]),
        helper.make_node("Flatten", ["g2"], ["g2f"]),
        helper.make_node("Mul", ["g", "g"], ["gg"]),
        helper.make_node("Concat", ["sf", "g2f", "gg"], ["y"], axis=1),
    ]
    inits = [("st", np.array([1, 0], dtype=np.int64)), ("en", np.array([99, 99], dtype=np.int64)),
             ("ax", np.array([1, 2], dtype=np.int64)), ("sp", np.array([1, 2], dtype=np.int64)),
             ("i1", np.array(1, dtype=np.int64)), ("i2", np.array([2, 3], dtype=np.int64))]
    graph = check_against_ort(make_model(nodes, [3, 5], inits=inits), [3, 5])
    assert {"slice", "mul", "concat"} <= {n.op for n in graph.nodes}


def test_shape_chain_reshape_with_dynamic_batch():
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["bu"]),
        helper.make_node("Concat", ["bu", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [("zero", np.array(0, dtype=np.int64)), ("axes0", np.array([0], dtype=np.int64)),
             ("minus1", np.array([-1], dtype=np.int64))]
    graph = check_against_ort(make_model(nodes, [2, 3, 4], inits=inits), [2, 3, 4])
    assert [n.op for n in graph.nodes] == ["flatten"]


def test_declared_batch_one_reshape_becomes_per_sample():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "W"], ["y"])]
    model = make_model(nodes, [2, 3], inits=[("shape", np.array([1, 6], dtype=np.int64)), ("W", rnd(6, 2))], batch=1)
    graph = read_onnx(model)
    x = rnd(5, 2, 3, seed=9)
    np.testing.assert_allclose(ours(graph, x), ort_rows(model, x, batch_one=True), atol=1e-5)


def test_exp_sqrt_reciprocal_pow_and_divisions():
    nodes = [helper.make_node("Exp", ["x"], ["e"]),
             helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("Add", ["a", "one"], ["a1"]),
             helper.make_node("Sqrt", ["a1"], ["s"]),
             helper.make_node("Reciprocal", ["a1"], ["r"]),
             helper.make_node("Pow", ["x", "three"], ["p"]),
             helper.make_node("Div", ["e", "s"], ["d"]),        # variable / variable
             helper.make_node("Div", ["two", "a1"], ["c"]),     # constant / variable
             helper.make_node("Concat", ["d", "c", "r", "p"], ["y"], axis=1)]
    inits = [("one", np.array(1.0, dtype=np.float32)), ("three", np.array(3.0, dtype=np.float32)),
             ("two", np.array(2.0, dtype=np.float32))]
    graph = check_against_ort(make_model(nodes, [4], inits=inits), [4])
    assert {"exp", "sqrt", "reciprocal", "pow", "mul"} <= {n.op for n in graph.nodes}


def test_split_where_expand_max_min_reduce_l2_and_log_softmax():
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),            # (2,) and (4,)
             helper.make_node("Split", ["x"], ["h1", "h2", "h3"], axis=1, num_outputs=3),
             helper.make_node("Max", ["h1", "h2"], ["mx"]),
             helper.make_node("Min", ["h3", "half"], ["mn"]),
             helper.make_node("Where", ["mask", "b", "mx4"], ["w"]),
             helper.make_node("Concat", ["mx", "mx"], ["mx4"], axis=1),
             helper.make_node("Unsqueeze", ["a", "axis1"], ["au"]),
             helper.make_node("Expand", ["au", "shape"], ["e"]),                        # (1, 2) -> (3, 2)
             helper.make_node("Flatten", ["e"], ["ef"]),
             helper.make_node("ReduceL2", ["x", "axis1"], ["l2"], keepdims=1),
             helper.make_node("LogSoftmax", ["b"], ["ls"], axis=1),
             helper.make_node("Concat", ["mn", "w", "ef", "l2", "ls"], ["y"], axis=1)]
    nodes = [*nodes[:4], nodes[5], nodes[4], *nodes[6:]]  # (the Concat feeding Where first)
    inits = [("sizes", np.array([2, 4], dtype=np.int64)), ("half", np.array(0.5, dtype=np.float32)),
             ("mask", np.array([True, False, True, False])), ("shape", np.array([1, 3, 1], dtype=np.int64)),
             ("axis1", np.array([1], dtype=np.int64))]
    model = onnx.load_from_string(make_model(nodes, [6], inits=inits, opset=18))
    graph = check_against_ort(model.SerializeToString(), [6])
    assert {"slice", "relu", "log_softmax", "sqrt"} <= {n.op for n in graph.nodes}


def test_one_dimensional_pooling():
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3], strides=[2], pads=[1, 1]),
             helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2], strides=[1], count_include_pad=0),
             helper.make_node("GlobalMaxPool", ["a"], ["g"]),
             helper.make_node("GlobalAveragePool", ["x"], ["h"]),
             helper.make_node("Flatten", ["a"], ["af"]), helper.make_node("Flatten", ["g"], ["gf"]),
             helper.make_node("Flatten", ["h"], ["hf"]),
             helper.make_node("Concat", ["af", "gf", "hf"], ["y"], axis=1)]
    graph = check_against_ort(make_model(nodes, [3, 9]), [3, 9])
    assert {"maxpool", "avgpool"} <= {n.op for n in graph.nodes}


@pytest.mark.parametrize("opset", [14, 17])
def test_layernorm_and_its_decomposed_form_are_one_node(opset):
    """torch exports LayerNorm below opset 17 as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div:
    read as one layernorm node (the Pow/Sqrt chain would have no certified bound)."""
    import io

    import torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 2)).eval()
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(2, 4),), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    graph = check_against_ort(buffer.getvalue(), [4])
    assert [n.op for n in graph.nodes if n.op not in ("affine",)] == ["linear", "layernorm", "linear"]


def test_batch_moving_graph_is_read_per_sample():
    """x (N, T, F) -> Transpose to (T, N, F) -> MatMul -> Transpose back -> Reshape (N, T*H):
    refused batch-first, read per sample (one sample's tensors, batch slot 1 included)."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("MatMul", ["t", "W"], ["m"]),
             helper.make_node("Transpose", ["m"], ["b"], perm=[1, 0, 2]),
             helper.make_node("Flatten", ["b"], ["y"], axis=1)]
    model = make_model(nodes, [3, 4], inits=[("W", rnd(4, 5))])
    with pytest.raises(ModelError, match="moves the batch dimension"):
        read_onnx(model)
    graph = read_onnx(model, per_sample=True)
    x = rnd(6, 3, 4, seed=4)
    np.testing.assert_allclose(ours(graph, x), ort_rows(model, x, batch_one=False), atol=1e-5)
    assert graph.input_shape == (3, 4)


@pytest.mark.parametrize("opset", [7, 9, 11])
def test_old_opsets_are_upgraded(opset):
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "W2", "C2"], ["g2"], transB=1),
             helper.make_node("Softmax", ["g2"], ["y"])]  # old Softmax: axis=1 with 2-D coercion
    inits = [("W", rnd(2, 1, 3, 3)), ("g", rnd(2, seed=1) + 2), ("b", rnd(2, seed=2)), ("m", rnd(2, seed=3)),
             ("v", np.abs(rnd(2, seed=4)) + 1), ("shape", np.array([1, -1], dtype=np.int64)),
             ("W2", rnd(3, 32, seed=5)), ("C2", rnd(3, seed=6))]
    model = onnx.load_from_string(make_model(nodes, [1, 6, 6], inits=inits, opset=opset, batch=1))
    model.ir_version = 3  # initializers not listed as inputs: the reader repairs this before converting
    graph = check_against_ort(model.SerializeToString(), [1, 6, 6], batch_one=True)
    assert [n.op for n in graph.nodes] == ["conv", "affine", "relu", "flatten", "linear", "softmax"]


# --------------------------------------------------------------------------- errors

def test_unsupported_operator_names_op_and_node():
    nodes = [helper.make_node("CumSum", ["x", "axis"], ["y"], name="running_total")]
    model = make_model(nodes, [3], inits=[("axis", np.array(1, dtype=np.int64))])
    with pytest.raises(ModelError, match="unsupported ONNX operator 'CumSum' in node 'running_total'"):
        read_onnx(model)


def test_reshape_that_mixes_the_batch_is_refused():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = make_model(nodes, [4], inits=[("shape", np.array([2, -1], dtype=np.int64))])
    with pytest.raises(ModelError, match="batch"):
        read_onnx(model)


def test_constant_subgraph_is_folded():
    nodes = [helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]),
             helper.make_node("Mul", ["W", "two"], ["W2"]),
             helper.make_node("MatMul", ["x", "W2"], ["y"])]
    model = make_model(nodes, [3], inits=[("Wt", rnd(2, 3)), ("two", np.float32(2.0))])
    graph = check_against_ort(model, [3])
    assert [n.op for n in graph.nodes] == ["linear"]


def test_missing_truncated_and_garbage_files(tmp_path, vnncomp):
    with pytest.raises(ModelError, match="not found"):
        read_onnx(tmp_path / "nope.onnx")
    data = (vnncomp / "mnistfc" / "mnist-net_256x2.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx"):
        read_onnx(cut)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xff not a model at all \x13" * 10)
    with pytest.raises(ModelError, match="junk.onnx"):
        read_onnx(junk)
