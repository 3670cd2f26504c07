"""`saferisk radius` and `saferisk reach`: JSON output, and bad input as one clear line, no
traceback, nonzero exit, nothing half-written."""

from __future__ import annotations

from tests.paths import DEMO
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saferisk.cli import main
from saferisk.result import RESULT_FIELDS

MLP = str(DEMO / "digits_mlp.onnx")
CNN = str(DEMO / "digits_cnn.onnx")
REGRESSION = str(DEMO / "regression_net.onnx")
DIGITS = DEMO / "digits_test.npz"
QUICK = ["--no-certify", "--budget", "2000"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    data = np.load(DEMO / "digits_test.npz")
    np.save(folder / "X.npy", data["X"][:12])
    np.save(folder / "y.npy", data["y"][:12])
    np.save(folder / "X_images.npy", data["X"][:12].reshape(12, 1, 8, 8))
    return folder


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_radius_json_prints_every_field(digits, tmp_path, capsys):
    wdir = tmp_path / "witnesses"
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", digits / "X.npy", "--indices", "0,3",
                              "--property", "robustness", "--norm", "inf", "--max-radius", "0.3",
                              "--domain=0,1", "--witness-dir", wdir, "--seed", "5", "--json", *QUICK], capsys)
    assert code == 0, err
    records = json.loads(out)
    assert isinstance(records, list) and [r["input_id"] for r in records] == ["0", "3"]
    for r in records:
        assert set(RESULT_FIELDS) <= set(r), set(RESULT_FIELDS) - set(r)
        assert r["property"] == "robustness" and r["norm"] == "inf" and r["max_radius"] == 0.3 and r["seed"] == 5
        assert r["status"] == "ok" and r["radius_estimate"] is not None and r["evaluations"] > 0
        assert r["model_sha256"] and r["search_mode"].startswith("fast")
        if r["radius_upper"] is not None:
            file, _, key = r["witness_ref"].partition("#")
            assert Path(file) == wdir / "witnesses.npz" and key == r["input_id"]
            with np.load(file) as saved:
                assert saved[f"{key}/witness"].shape == (64,)
    assert any(r["radius_upper"] is not None for r in records)
    assert sorted(p.name for p in wdir.iterdir()) == ["witnesses.npz"]  # no temporary files left


def test_radius_accepts_inputs_in_the_models_shape_and_other_properties(digits, capsys):
    code, out, err = run_cli(["radius", "--model", CNN, "--inputs", digits / "X_images.npy", "--indices", "1",
                              "--property", "uncertainty", "--epsilon", "0.05", "--norm", "2",
                              "--max-radius", "1.0", "--domain=0,1", "--search", "gps", "--json", *QUICK], capsys)
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["property"] == "uncertainty" and record["threshold"] == 0.05 and record["norm"] == "2"
    assert record["search_mode"].startswith("gps")
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", digits / "X.npy", "--labels", digits / "y.npy",
                              "--indices", "2", "--property", "invariance", "--k", "2", "--norm", "inf",
                              "--max-radius", "0.5", "--domain=0,1", "--json", *QUICK], capsys)
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["property"] == "invariance" and len(record["extra"]["references"]) == 2
    assert "reference_id" in record["extra"] and "reference_distance" in record["extra"]


def margin_0_over_1(outputs):
    """A custom property for the CLI test: output 0 above output 1."""
    return outputs[:, 0] - outputs[:, 1]


def test_radius_offers_linear_output_and_custom_properties_as_the_config_does(digits, tmp_path, capsys):
    """Every property kind of the config: linear_output through --params (inline JSON or a file),
    custom through --function; the same numbers as the config's params give."""
    with np.load(DIGITS) as data:
        x0 = data["X"][:1]
    np.save(tmp_path / "x.npy", x0)
    from saferisk.models.load import load_model

    z0 = load_model(MLP).forward_flat(__import__("torch").from_numpy(x0.astype(np.float32)))[0]
    top, second = (int(i) for i in z0.argsort(descending=True)[:2])
    row = [0.0] * 10
    row[top], row[second] = 1.0, -1.0  # unsafe: z_top - z_second <= 0
    unsafe = {"unsafe": [{"C": [row], "d": [0.0]}]}
    (tmp_path / "unsafe.yaml").write_text(json.dumps(unsafe))
    records = []
    for params in (json.dumps(unsafe), tmp_path / "unsafe.yaml"):
        code, out, err = run_cli(["radius", "--model", MLP, "--inputs", tmp_path / "x.npy", "--property", "linear_output",
                                  "--params", params, "--norm", "inf", "--max-radius", "0.5", "--domain=0,1", "--json",
                                  "--budget", "2000", "--certify-method", "crown"], capsys)
        assert code == 0, err
        (record,) = json.loads(out)
        assert record["property"] == "linear_output" and record["status"] == "ok"
        assert record["radius_lower"] is not None and record["radius_lower"] <= (record["radius_upper"] or 0.5)
        records.append(record)
    assert records[0]["radius_lower"] == records[1]["radius_lower"]
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", tmp_path / "x.npy", "--property", "custom",
                              "--function", f"{__name__}:margin_0_over_1", "--threshold", "-100", "--norm", "inf",
                              "--max-radius", "0.1", "--domain=0,1", "--json", *QUICK], capsys)
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["property"] == "custom" and record["threshold"] == -100 and record["radius_estimate"] is not None
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", tmp_path / "x.npy", "--property", "linear_output",
                              "--params", "[1, 2]", "--norm", "inf", "--max-radius", "0.5"], capsys)
    assert code == 2 and "--params must be a mapping" in err


def test_radius_domain_with_negative_numbers_and_domain_file(tmp_path, capsys):
    X = np.array([[5.0, 0.2, 500.0], [2.0, -0.5, 300.0]])
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "domain.csv").write_text("lower,upper\n0,10\n-1,1\n100,1000\n")
    common = ["radius", "--model", REGRESSION, "--inputs", tmp_path / "x.npy", "--property", "reachability",
              "--output", "0", "--lower=-0.5", "--norm", "inf", "--max-radius", "0.2", "--json", *QUICK]
    code, out, err = run_cli([*common, "--domain-file", tmp_path / "domain.csv", "--scale", "domain"], capsys)
    assert code == 0, err
    records = json.loads(out)
    assert [r["scale"] for r in records] == ["domain", "domain"]
    code, out, err = run_cli([*common, "--domain=-1000,1000"], capsys)
    assert code == 0, err
    assert len(json.loads(out)) == 2


def test_reach_json(capsys):
    code, out, err = run_cli(["reach", "--model", REGRESSION, "--lower=0,-1,100", "--upper", "10,1,1000",
                              "--budget", "20000", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= {"min", "max", "argmin", "argmax", "evaluations", "seconds"}
    assert result["min"] < result["max"] and result["evaluations"] > 0 and result["seconds"] > 0
    from saferisk.models import load_model

    model = load_model(REGRESSION)
    for key in ("min", "max"):
        point = torch.tensor([result[f"arg{key}"]])
        assert float(model.forward_flat(point)[0, 0]) == pytest.approx(result[key], abs=1e-5)
    # the demo's target f = sin(0.6 d) + 0.5 s^2 + s log10(p / 100) ranges over [-1.5, 2.5]; the net
    # (RMSE 0.02) over [-1.4955, 2.3900] on a dense grid: the search must reach the grid's extremes
    assert -1.6 < result["min"] < -1.4 and 2.3 < result["max"] < 2.6
    grid = torch.cartesian_prod(torch.linspace(0, 10, 101), torch.linspace(-1, 1, 41), torch.linspace(100, 1000, 46))
    values = model.forward_flat(grid)[:, 0]
    assert result["min"] <= float(values.min()) + 1e-6 and result["max"] >= float(values.max()) - 1e-6


def _bad_inputs(folder: Path) -> dict[str, Path]:
    files = {"wrong_shape": (np.zeros((3, 10)),), "nan": (np.full((2, 64), 0.5),), "outside": (np.full((2, 64), 0.5),)}
    files["nan"][0][1, 7] = np.nan
    files["outside"][0][1, 3] = 1.5
    out = {"corrupt_onnx": folder / "corrupt.onnx", "labels3": folder / "labels3.npy"}
    out["corrupt_onnx"].write_bytes(b"not an onnx file")
    np.save(out["labels3"], np.array([1, 2, 3]))
    for name, (arr,) in files.items():
        out[name] = folder / f"{name}.npy"
        np.save(out[name], arr)
    return out


# (id, options replaced or added, message expected in the one-line error)
BAD = [
    ("wrong_shape", {"--inputs": "{wrong_shape}"}, "each input has 10 elements (shape (10,)), the model takes 64"),
    ("nan_input", {"--inputs": "{nan}"}, "row 1 feature 7 is nan"),
    ("outside_domain", {"--inputs": "{outside}", "--domain=0,1": None}, "feature 3 = 1.5 is outside the domain"),
    ("unknown_property", {"--property": "robustnes"}, "unknown property kind 'robustnes'"),
    ("radius_zero", {"--max-radius": "0"}, "--max-radius must be > 0"),
    ("radius_negative", {"--max-radius": "-0.1"}, "--max-radius must be > 0"),
    ("radius_nan", {"--max-radius": "nan"}, "--max-radius must be > 0"),
    ("missing_inputs", {"--inputs": "{folder}/nope.npy"}, "input set file not found"),
    ("missing_model", {"--model": "{folder}/nope.onnx"}, "nope.onnx"),
    ("bad_domain", {"--domain=-1": None}, "--domain needs two numbers"),
    ("inverted_domain", {"--domain=1,0": None}, "lower > upper"),
    ("bad_indices", {"--indices": "0,99"}, "indices out of range: [99]"),
    ("domain_and_file", {"--domain=0,1": None, "--domain-file": "{folder}/d.csv"}, "not both"),
    ("missing_domain_file", {"--domain-file": "{folder}/d.csv"}, "domain file not found"),
    ("corrupt_model", {"--model": "{corrupt_onnx}"}, "not a readable ONNX file"),
    ("target_class_range", {"--target-classes": "99"}, "target_classes [99] out of range for 10 outputs"),
    ("reach_no_bounds", {"--property": "reachability"}, "needs a finite lower and/or upper"),
    ("epsilon_negative", {"--property": "uncertainty", "--epsilon": "-1"}, "epsilon must be > 0"),
    ("k_zero", {"--property": "invariance", "--k": "0"}, "k must be >= 1"),
    ("invariance_no_labels", {"--property": "invariance"}, "invariance needs labelled inputs"),
    ("label_count", {"--property": "invariance", "--labels": "{labels3}"}, "but 3 labels in"),
    ("budget_zero", {"--budget": "0"}, "budget must be >= 1"),
    ("radius_inf", {"--max-radius": "inf"}, "max radius must be a finite number > 0"),
    ("domain_not_numbers", {"--domain=a,b": None}, "--domain must be comma-separated numbers"),
    ("scale_domain_unbounded", {"--scale": "domain"}, "needs a finite domain"),
]


@pytest.mark.parametrize("name, options, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, name, options, message):
    values = {**{k: str(v) for k, v in _bad_inputs(tmp_path).items()}, "folder": str(tmp_path)}
    good = tmp_path / "good.npy"
    np.save(good, np.full((2, 64), 0.5))
    args = {"--model": MLP, "--inputs": str(good), "--property": "robustness", "--norm": "inf", "--max-radius": "0.1"}
    args.update({k: None if v is None else v.format(**values) for k, v in options.items()})
    wdir = tmp_path / "wd"
    argv = ["radius", *QUICK, "--witness-dir", str(wdir), "--json"]  # the case's options come last and win
    for key, value in args.items():
        argv += [key] if value is None else [f"{key}={value}"]
    code, out, err = run_cli(argv, capsys)
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saferisk: error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not wdir.exists() or not any(wdir.iterdir())
    print(f"\n{name}: {lines[0]}")


def test_an_input_outside_the_domain_is_refused_before_any_computation(tmp_path, capsys):
    X = np.full((3, 64), 0.5)
    X[2, 0] = 2.0  # the third input is outside the domain: all rows are checked first
    np.save(tmp_path / "x.npy", X)
    wdir = tmp_path / "wd"
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", tmp_path / "x.npy", "--property", "robustness",
                              "--norm", "inf", "--max-radius", "0.5", "--domain=0,1", "--witness-dir", wdir,
                              "--json", *QUICK], capsys)
    assert code != 0 and "row 2 feature 0 = 2 is outside the domain [0, 1]" in err
    assert out == ""
    assert not wdir.exists() or not any(wdir.iterdir())


def test_inputs_of_another_size_are_never_reshaped_to_fit(capsys):
    """64-feature digits are not 'inputs' of a 3-feature model, even though 540 x 64 = 11520 x 3."""
    code, out, err = run_cli(["radius", "--model", REGRESSION, "--inputs", str(DIGITS), "--property", "reachability",
                              "--upper", "1", "--norm", "inf", "--max-radius", "0.1", "--json", *QUICK], capsys)
    assert code == 2 and out == ""
    assert "each input has 64 elements" in err and "the model takes 3" in err


def test_csv_inputs_with_a_header_row(tmp_path, capsys):
    rows = "\n".join(",".join(["0.5"] * 64) for _ in range(2))
    (tmp_path / "x.csv").write_text(",".join(f"f{i}" for i in range(64)) + "\n" + rows + "\n")
    code, out, err = run_cli(["radius", "--model", MLP, "--inputs", str(tmp_path / "x.csv"), "--property", "robustness",
                              "--norm", "inf", "--max-radius", "0.1", "--json", *QUICK], capsys)
    assert code == 0, err
    assert [r["input_id"] for r in json.loads(out)] == ["0", "1"]


@pytest.mark.parametrize("argv, message", [
    (["--norm", "3"], "invalid choice: '3'"),
    (["--search", "random"], "invalid choice: 'random'"),
])
def test_argparse_choices_are_clear_errors(capsys, argv, message):
    base = ["radius", "--model", MLP, "--inputs", "x.npy", "--property", "robustness", "--max-radius", "0.1"]
    if "--norm" not in argv:
        base += ["--norm", "inf"]
    with pytest.raises(SystemExit) as exc:
        main(base + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_reach_bad_input(capsys):
    code, out, err = run_cli(["reach", "--model", REGRESSION, "--lower=0,-1", "--upper", "10,1"], capsys)
    assert code == 2 and "the box has 2 dimensions, the model expects 3 inputs" in err
    code, out, err = run_cli(["reach", "--model", REGRESSION, "--lower=0,-1,100", "--upper", "10,1"], capsys)
    assert code == 2 and "--lower has 3 values, --upper has 2" in err
    code, out, err = run_cli(["reach", "--model", REGRESSION, "--lower=0,2,100", "--upper", "10,1,1000"], capsys)
    assert code == 2 and "lower > upper" in err and len(err.strip().splitlines()) == 1


def test_real_subprocess_error_has_no_traceback(tmp_path):
    X = np.full((2, 64), 0.5)
    X[1, 5] = np.nan
    np.save(tmp_path / "x.npy", X)
    wdir = tmp_path / "wd"
    proc = subprocess.run([sys.executable, "-m", "saferisk", "radius", "--model", MLP, "--inputs",
                           str(tmp_path / "x.npy"), "--property", "robustness", "--norm", "inf", "--max-radius", "0.1",
                           "--witness-dir", str(wdir), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 1 feature 5 is nan" in lines[0], proc.stderr
    assert not wdir.exists()


def _nan_onnx(path: Path) -> None:
    """y = sigmoid(x * (inf, 1)) @ W: NaN outputs exactly where x[0] == 0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.array([np.inf, 1.0], dtype=np.float32), "scale")
    weight = numpy_helper.from_array(np.array([[1.0, 0.5], [2.0, -1.0]], dtype=np.float32), "W")
    nodes = [helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Sigmoid", ["m"], ["s"]),
             helper.make_node("MatMul", ["s", "W"], ["y"])]
    graph = helper.make_graph(nodes, "nan_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [scale, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)


def test_nan_outputs_fail_that_input_only(tmp_path, capsys):
    _nan_onnx(tmp_path / "nan.onnx")
    np.save(tmp_path / "x.npy", np.array([[0.0, 0.5], [0.8, 0.5]]))
    code, out, err = run_cli(["radius", "--model", tmp_path / "nan.onnx", "--inputs", tmp_path / "x.npy",
                              "--property", "robustness", "--norm", "inf", "--max-radius", "0.3", "--domain=0,1",
                              "--json", *QUICK], capsys)
    assert "Traceback" not in err
    records = json.loads(out)
    assert records[0]["status"].startswith("failed: ") and "NaN" in records[0]["status"]
    assert records[1]["status"] == "ok" and records[1]["radius_estimate"] is not None
    print(f"\nexit code with one failed input: {code}; stderr: {err!r}")


def test_reach_refuses_nan_outputs_and_nan_bounds(tmp_path, capsys):
    _nan_onnx(tmp_path / "nan.onnx")  # NaN wherever x[0] == 0: the box's lower corner
    code, out, err = run_cli(["reach", "--model", tmp_path / "nan.onnx", "--lower=0,0", "--upper", "1,1"], capsys)
    assert code != 0 and out == "" and "NaN or infinite output" in err and "Traceback" not in err
    code, out, err = run_cli(["reach", "--model", REGRESSION, "--lower=0,-1,nan", "--upper", "10,1,1000"], capsys)
    assert code != 0 and out == "" and "a bound is NaN" in err


def test_torchscript_model_with_input_shape_option(tmp_path, capsys):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 8, 8)), str(tmp_path / "net.pt"))
    np.save(tmp_path / "x.npy", np.full((1, 64), 0.5))
    argv = ["radius", "--model", str(tmp_path / "net.pt"), "--inputs", str(tmp_path / "x.npy"), "--property",
            "robustness", "--norm", "inf", "--max-radius", "0.1", "--json", *QUICK]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and "input_shape (per sample, e.g. 1,28,28) is required" in err
    code, out, err = run_cli(argv + ["--input-shape", "1,8,8"], capsys)
    assert code == 0, err
    assert json.loads(out)[0]["status"] == "ok"
