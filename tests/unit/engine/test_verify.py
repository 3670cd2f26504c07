"""`saferisk verify`: sat only with a re-checked counterexample, unsat only from certified
bounds, never sat on a property the VNN-COMP verifiers proved."""

from __future__ import annotations

from tests.paths import SHARED
import json
import time
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saferisk.cli import main
from saferisk.models import load_model as _load_model
from saferisk.verify import verify_spec
from saferisk.data.vnnlib import load_vnnlib

VNNCOMP = SHARED / "vnncomp"
ACAS = {"1_1": "ACASXU_run2a_1_1_batch_2000.onnx", "2_1": "ACASXU_run2a_2_1_batch_2000.onnx"}
# Known outcomes (../shared/vnncomp/README.md): True = verified, False = counterexample.
ACAS_VERIFIED = {("1_1", p): True for p in (1, 2, 3, 4)} | {("2_1", p): p != 2 for p in (1, 2, 3, 4)}
MNIST_VERIFIED = {(p, "0.03"): True for p in range(5)} | {(p, "0.05"): p in (2, 4) for p in range(5)}


@pytest.fixture(scope="module")
def vnncomp() -> Path:
    if not (VNNCOMP / "acasxu").is_dir() or not (VNNCOMP / "mnistfc").is_dir():
        pytest.skip("../shared/vnncomp is not available")
    return VNNCOMP


def _onnx_outputs(model_path: Path, x: np.ndarray) -> np.ndarray:
    """An independent forward pass (onnxruntime, not saferisk's graph executor)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    info = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in info.shape]
    return session.run(None, {info.name: np.asarray(x, np.float32).reshape(shape)})[0].reshape(-1)


def _assert_valid_counterexample(model_path: Path, spec_path: Path, cex: dict) -> None:
    spec = load_vnnlib(spec_path)
    x = np.asarray(cex["input"])
    assert x.shape == (spec.n_inputs,)
    assert np.all(x >= spec.lower) and np.all(x <= spec.upper)  # every input constraint
    y = _onnx_outputs(model_path, x).astype(np.float64)
    np.testing.assert_allclose(y, cex["output"], rtol=1e-4, atol=1e-5)
    # the unsafe condition, on the independent outputs, up to float32 rounding
    assert any(np.all(C @ y <= d + 1e-5) for C, d in spec.unsafe_rows())
    assert spec.output_unsafe(np.asarray(cex["output"]))  # exactly, on the reported outputs


def _verify_json(capsys, model: Path, spec: Path, timeout: float = 3.0) -> dict:
    code = main(["verify", "--model", str(model), "--spec", str(spec), "--timeout", str(timeout), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


# ----------------------------------------------------------------------------- VNN-COMP benchmarks

def test_acasxu_2_1_prop_2_sat(vnncomp, capsys):
    model, spec = vnncomp / "acasxu" / ACAS["2_1"], vnncomp / "acasxu" / "prop_2.vnnlib"
    result = _verify_json(capsys, model, spec)
    assert result["result"] == "sat" and result["method"] == "search"
    assert result["seconds"] >= 0
    _assert_valid_counterexample(model, spec, result["counterexample"])
    assert result["counterexample"]["rechecked_by"] == "torch+onnxruntime"


@pytest.mark.parametrize("prop", [0, 1, 3])
def test_mnist_eps_005_sat(vnncomp, capsys, prop):
    model, spec = vnncomp / "mnistfc" / "mnist-net_256x2.onnx", vnncomp / "mnistfc" / f"prop_{prop}_0.05.vnnlib"
    result = _verify_json(capsys, model, spec)
    assert result["result"] == "sat" and result["seconds"] < 60
    cex = result["counterexample"]
    _assert_valid_counterexample(model, spec, cex)
    assert cex["rechecked_by"] == "torch+onnxruntime"  # onnxruntime sees the same violation
    # the label changed: some other class reaches the label's output
    label = load_vnnlib(spec).label
    assert max(v for i, v in enumerate(cex["output"]) if i != label) >= cex["output"][label]


@pytest.mark.parametrize("prop, eps", [(2, "0.05"), (4, "0.03")])
def test_mnist_unsat_by_certified_bounds(vnncomp, prop, eps):
    model = _load_model(str(vnncomp / "mnistfc" / "mnist-net_256x2.onnx"))
    result = verify_spec(model, load_vnnlib(vnncomp / "mnistfc" / f"prop_{prop}_{eps}.vnnlib"), timeout_s=5.0)
    assert result.result == "unsat" and result.method == "bounds" and result.counterexample is None


@pytest.mark.slow
def test_never_sat_on_verified_mnist(vnncomp):
    model = _load_model(str(vnncomp / "mnistfc" / "mnist-net_256x2.onnx"))
    for (prop, eps), verified in sorted(MNIST_VERIFIED.items()):
        spec_path = vnncomp / "mnistfc" / f"prop_{prop}_{eps}.vnnlib"
        result = verify_spec(model, load_vnnlib(spec_path), timeout_s=1.0, seed=1)
        if verified:
            assert result.result != "sat", (prop, eps)
        elif result.result == "sat":
            _assert_valid_counterexample(vnncomp / "mnistfc" / "mnist-net_256x2.onnx", spec_path,
                                         result.counterexample.to_dict())
        if result.result == "unsat":
            assert verified, (prop, eps)  # a proof of a property with a known counterexample: unsound


@pytest.mark.slow
def test_never_sat_on_verified_acasxu(vnncomp):
    for net, name in ACAS.items():
        model = _load_model(str(vnncomp / "acasxu" / name))
        for prop in (1, 2, 3, 4):
            spec_path = vnncomp / "acasxu" / f"prop_{prop}.vnnlib"
            result = verify_spec(model, load_vnnlib(spec_path), timeout_s=1.0, seed=1)
            if ACAS_VERIFIED[(net, prop)]:
                assert result.result != "sat", (net, prop)
            else:
                assert result.result != "unsat", (net, prop)
                if result.result == "sat":
                    _assert_valid_counterexample(vnncomp / "acasxu" / name, spec_path,
                                                 result.counterexample.to_dict())


def test_plain_output_and_result_file(vnncomp, capsys, tmp_path):
    model, spec = vnncomp / "acasxu" / ACAS["2_1"], vnncomp / "acasxu" / "prop_2.vnnlib"
    out_file = tmp_path / "result.txt"
    code = main(["verify", "--model", str(model), "--spec", str(spec), "--timeout", "3",
                 "--output", str(out_file)])
    assert code == 0
    assert capsys.readouterr().out == "sat\n"
    lines = out_file.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].startswith(" (Y_4 ")


def test_model_spec_size_mismatch(vnncomp, capsys):
    code = main(["verify", "--model", str(vnncomp / "acasxu" / ACAS["1_1"]),
                 "--spec", str(vnncomp / "mnistfc" / "prop_0_0.03.vnnlib")])
    err = capsys.readouterr().err
    assert code == 2 and "784 inputs, the model takes 5" in err


# ----------------------------------------------------------------------------- synthetic model

def _tiny_model(path: Path) -> Path:
    """y = relu(x0 + x1 - 0.5) and y1 = x0 - x1: a 2-input ONNX model built by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W1 = numpy_helper.from_array(np.array([[1.0, 1.0], [1.0, -1.0]], np.float32), "W1")
    b1 = numpy_helper.from_array(np.array([-0.5, 0.0], np.float32), "b1")
    W2 = numpy_helper.from_array(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), "W2")
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [W1, b1, W2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


BOX = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)" \
      "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))"


def test_synthetic_sat_unsat(tmp_path, capsys):
    model = _tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "sat.vnnlib").write_text(BOX + "(assert (>= Y_0 1.4))")  # max y0 = 1.5 at (1, 1)
    (tmp_path / "unsat.vnnlib").write_text(BOX + "(assert (or (<= Y_0 -0.1) (>= Y_0 1.6)))")
    sat = _verify_json(capsys, model, tmp_path / "sat.vnnlib", timeout=5.0)
    assert sat["result"] == "sat"
    x, y = np.asarray(sat["counterexample"]["input"]), np.asarray(sat["counterexample"]["output"])
    assert np.all((x >= 0) & (x <= 1)) and y[0] >= 1.4
    np.testing.assert_allclose(y, _onnx_outputs(model, x), rtol=1e-6)
    unsat = _verify_json(capsys, model, tmp_path / "unsat.vnnlib", timeout=5.0)
    assert unsat["result"] == "unsat" and unsat["counterexample"] is None


def test_synthetic_boundary_and_unknown(tmp_path, capsys):
    """Unsafe set reachable only at the corner (1, 1): y0 >= 1.5 - 1e-4 is sat; nothing
    claims sat for y0 >= 1.5 + 1e-4 (outside the reachable range)."""
    model = _tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "edge.vnnlib").write_text(BOX + "(assert (>= Y_0 1.4999))")
    (tmp_path / "beyond.vnnlib").write_text(BOX + "(assert (>= Y_0 1.5001))")
    assert _verify_json(capsys, model, tmp_path / "edge.vnnlib")["result"] == "sat"
    assert _verify_json(capsys, model, tmp_path / "beyond.vnnlib", timeout=2.0)["result"] in ("unsat", "unknown")


def test_cli_errors_in_process(tmp_path, capsys):
    model = _tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "bad.vnnlib").write_text(BOX + "(assert (<= Y_7 0))")
    assert main(["verify", "--model", str(model), "--spec", str(tmp_path / "bad.vnnlib")]) == 2
    assert "Y_7 is used but not declared" in capsys.readouterr().err
    assert main(["verify", "--model", str(tmp_path / "none.onnx"), "--spec", str(tmp_path / "bad.vnnlib")]) == 2
    assert "bad.vnnlib" in capsys.readouterr().err  # the spec is read (and fails) first
    (tmp_path / "ok.vnnlib").write_text(BOX + "(assert (>= Y_0 1.4))")
    assert main(["verify", "--model", str(tmp_path / "none.onnx"), "--spec", str(tmp_path / "ok.vnnlib")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["verify", "--model", str(model), "--spec", str(tmp_path / "ok.vnnlib"), "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_cli_subprocess_bad_input(tmp_path):
    (tmp_path / "bad.vnnlib").write_text("(declare-const X_0 Real)(assert (<= X_0")
    proc = subprocess.run([sys.executable, "-m", "saferisk", "verify", "--model", str(tmp_path / "m.onnx"),
                           "--spec", str(tmp_path / "bad.vnnlib")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("saferisk: error:") and "bad.vnnlib" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_first_layer_corners_through_affine_prefix():
    from saferisk.search.counterexample import first_layer_corners
    from saferisk.models.graph import Graph, Node

    f64 = dict(dtype=torch.float64)
    nodes = [Node("affine", ["x"], "a", {"scale": torch.tensor([-1.0, 2.0], **f64), "shift": torch.tensor([0.5, 0.0], **f64)}),
             Node("linear", ["a"], "z", {"weight": torch.tensor([[1.0, 1.0], [1.0, 1.0]], **f64),
                                         "bias": torch.tensor([-0.2, 5.0], **f64)}),
             Node("relu", ["z"], "r")]
    graph = Graph("x", "r", (2,), nodes)
    lower, upper = torch.zeros(2, **f64), torch.ones(2, **f64)
    # unit 0: z = 0.3 - x0 + 2 x1 in [-0.7, 2.3] switches; unit 1 (z >= 4.5) is always on
    corners = first_layer_corners(graph, lower, upper)
    assert corners.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    nodes[1].params["bias"] = torch.tensor([5.0, 5.0], **f64)
    assert first_layer_corners(graph, lower, upper) is None  # nothing switches
    assert first_layer_corners(Graph("x", "r", (2,), [Node("relu", ["x"], "r")]), lower, upper) is None


# ----------------------------------------------------------------------------- onnxruntime-only models

def _counting_runtime(onnx_bytes: bytes):
    """onnxruntime forward passes (saferisk.models.ort) that count the rows they run."""
    from saferisk.models.ort import OnnxRuntimeForward

    class CountingRuntime(OnnxRuntimeForward):
        rows = 0

        def __call__(self, x):
            self.rows += int(x.shape[0])
            return super().__call__(x)

    return CountingRuntime(onnx_bytes)


def _onnxruntime_only(model_path: Path):
    """The model as a user without saferisk's graph has it: onnxruntime forward passes only, no
    gradients, no bounds (as benchmarks/bench_witness.py builds its black-box models)."""
    from saferisk.models.model import Model

    return Model(None, name=model_path.stem, runtime=_counting_runtime(model_path.read_bytes()),
                 graph_error="black-box run")


KNOWN_SAT = [("acasxu", ACAS["2_1"], "prop_2.vnnlib")] + \
    [("mnistfc", "mnist-net_256x2.onnx", f"prop_{p}_0.05.vnnlib") for p in (0, 1, 3)]


@pytest.mark.parametrize("folder, onnx_name, spec_name", KNOWN_SAT)
def test_known_sat_onnxruntime_only(vnncomp, folder, onnx_name, spec_name):
    """Every known counterexample of the shared subset, on the model loaded as onnxruntime-only,
    within the 60 s goal; the counterexample holds in a fresh onnxruntime session."""
    model_path, spec_path = vnncomp / folder / onnx_name, vnncomp / folder / spec_name
    model = _onnxruntime_only(model_path)
    result = verify_spec(model, load_vnnlib(spec_path), timeout_s=60.0)
    assert result.result == "sat" and result.method == "search" and result.seconds < 60
    assert result.counterexample.rechecked_by == "onnxruntime"
    _assert_valid_counterexample(model_path, spec_path, result.counterexample.to_dict())
    assert result.evaluations <= model.runtime.rows  # every row the search ran is counted (plus the re-checks)


def test_finite_difference_attack_finds_mnist_prop_0(vnncomp):
    """mnist-net_256x2 prop_0 at eps 0.05 falls to neither random starts nor the pattern search:
    the attack alone on finite-difference gradients (from the lower vertex) finds it."""
    from saferisk.search.counterexample import attack_box
    from saferisk.verify import check_counterexample

    model_path, spec_path = vnncomp / "mnistfc" / "mnist-net_256x2.onnx", vnncomp / "mnistfc" / "prop_0_0.05.vnnlib"
    model, spec = _onnxruntime_only(model_path), load_vnnlib(spec_path)
    watched = attack_box(model, spec, time.perf_counter() + 60.0, seed=0, fixed=True)
    assert watched.candidate is not None
    assert watched.evaluations == model.runtime.rows  # outputs and difference rows alike, all watched
    cex = check_counterexample(model, spec, watched.candidate)
    assert cex is not None
    _assert_valid_counterexample(model_path, spec_path, cex.to_dict())


def _tiny_onnxruntime_only(tmp_path: Path, assertion: str):
    model_path = _tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "spec.vnnlib").write_text(BOX + assertion)
    return _onnxruntime_only(model_path), load_vnnlib(tmp_path / "spec.vnnlib")


def test_attack_on_finite_differences_from_random_starts(tmp_path):
    """y1 = relu(x0 - x1) >= 0.99 only near the vertex (1, 0): neither the lower nor the upper
    vertex, so random starts must follow the estimated gradient there; every forward row the
    runtime ran went through the watcher."""
    from saferisk.search.counterexample import attack_box

    model, spec = _tiny_onnxruntime_only(tmp_path, "(assert (>= Y_1 0.99))")
    watched = attack_box(model, spec, time.perf_counter() + 30.0, seed=0, fixed=False)
    assert watched.candidate is not None
    x = watched.candidate.numpy()
    assert spec.input_inside(x) and x[0] - x[1] >= 0.99 - 1e-6
    assert watched.evaluations == model.runtime.rows > 2  # outputs and differences, all watched


def test_attack_on_finite_differences_keeps_the_deadline(tmp_path):
    from saferisk.search.counterexample import attack_box

    model, spec = _tiny_onnxruntime_only(tmp_path, "(assert (>= Y_0 2.0))")  # max y0 = 1.5: unreachable
    start = time.perf_counter()
    watched = attack_box(model, spec, start + 0.5, seed=0, fixed=True, steps=10**6)
    assert 0.5 <= time.perf_counter() - start < 1.5
    assert watched.candidate is None and watched.evaluations == model.runtime.rows > 0


def test_watched_batches_stop_at_the_first_unsafe_chunk(tmp_path):
    """A large batch (finite differences) runs WATCH_ROWS rows at a time: an unsafe row in the
    first chunk ends the search before the rest runs."""
    from saferisk.search.counterexample import WATCH_ROWS, WatchedModel, _Stop

    model, spec = _tiny_onnxruntime_only(tmp_path, "(assert (>= Y_0 1.4))")
    x = torch.full((2 * WATCH_ROWS + 3, 2), 0.25)
    x[5] = torch.tensor([1.0, 1.0])  # y0 = 1.5
    watched = WatchedModel(model, spec, time.perf_counter() + 30.0)
    with pytest.raises(_Stop):
        watched.forward_flat(x)
    assert watched.candidate.tolist() == [1.0, 1.0]
    assert watched.evaluations == model.runtime.rows == WATCH_ROWS
    safe = WatchedModel(model, spec, time.perf_counter() + 30.0)
    assert safe.forward_flat(torch.full((WATCH_ROWS + 3, 2), 0.25)).shape == (WATCH_ROWS + 3, 2)
