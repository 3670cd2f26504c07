"""VNN-LIB import: the box, the unsafe output set, robustness recognition, centre and eps."""

from __future__ import annotations

from tests.paths import SHARED
from pathlib import Path

import numpy as np
import pytest
import torch

from saferisk.data.spec import load_path as load_input_set
from saferisk.data.vnnlib import load_vnnlib, parse_vnnlib
from saferisk.errors import DataError
from saferisk.properties import LinearOutput, Robustness, vnnlib_property, vnnlib_unsafe

VNNCOMP = SHARED / "vnncomp"
MNIST_LABELS = {0: 8, 1: 1, 2: 0, 3: 7, 4: 2}  # from the files' "label: j" comments


@pytest.fixture(scope="module")
def vnncomp() -> Path:
    if not (VNNCOMP / "acasxu").is_dir() or not (VNNCOMP / "mnistfc").is_dir():
        pytest.skip("../shared/vnncomp is not available")
    return VNNCOMP


def _declare(n, m):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + \
        "".join(f"(declare-const Y_{i} Real)\n" for i in range(m))


def test_linear_terms_and_dnf():
    text = _declare(2, 3) + """
    ; comment (with parentheses)
    (assert (<= X_0 1.5)) (assert (>= X_0 -0.5))
    (assert (and (>= X_1 0) (<= (* 2 X_1) 1)))
    (assert (or (and (<= (+ Y_0 (* -1 Y_1)) 0.5) (>= Y_2 1e-1))
                (<= (- Y_2 Y_0) -2)))
    (assert (>= Y_1 Y_2))
    """
    spec = parse_vnnlib(text)
    assert spec.lower.tolist() == [-0.5, 0.0] and spec.upper.tolist() == [1.5, 0.5]
    assert isinstance(vnnlib_property(spec), LinearOutput) and spec.label is None and spec.center is None
    rows = spec.unsafe_rows()
    assert len(rows) == 2
    np.testing.assert_array_equal(rows[0][0], [[1, -1, 0], [0, 0, -1], [0, -1, 1]])
    np.testing.assert_array_equal(rows[0][1], [0.5, -0.1, 0.0])
    np.testing.assert_array_equal(rows[1][0], [[-1, 0, 1], [0, -1, 1]])
    np.testing.assert_array_equal(rows[1][1], [-2.0, 0.0])
    # the LinearOutput property fails exactly on the unsafe set
    bound = vnnlib_property(spec).bind(torch.zeros(3))
    y = torch.tensor([[1.0, 0.6, 0.5], [1.0, 0.0, 0.5], [3.0, 0.0, -1.0], [0.0, 0.2, 0.1], [0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = [spec.output_unsafe(row.numpy()) for row in y]
    assert expected == [True, False, True, True, False]  # [0, .2, .1]: on the boundary
    assert bound.violated(y).tolist() == expected


def test_robustness_argmax_and_argmin_recognised():
    ors = " ".join(f"(and (>= Y_{i} Y_2))" for i in range(4) if i != 2)
    spec = parse_vnnlib(_declare(1, 4) + f"(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (or {ors}))")
    assert isinstance(vnnlib_property(spec), Robustness) and vnnlib_property(spec).decision == "argmax" and spec.label == 2
    ors = " ".join(f"(<= Y_{i} Y_0)" for i in range(1, 4))
    spec = parse_vnnlib(_declare(1, 4) + f"(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (or {ors}))")
    assert vnnlib_property(spec).decision == "argmin" and spec.label == 0
    # one class missing from the disjunction: not robustness
    ors = " ".join(f"(>= Y_{i} Y_2)" for i in (0, 1))
    spec = parse_vnnlib(_declare(1, 4) + f"(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (or {ors}))")
    assert isinstance(vnnlib_property(spec), LinearOutput) and spec.label is None


def test_linf_centre_recovery_synthetic():
    x0 = np.array([0.0, 0.02, 0.5, 0.99, 1.0, 0.3])
    eps = 0.05
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    bounds = "".join(f"(assert (<= X_{i} {float(hi[i])!r})) (assert (>= X_{i} {float(lo[i])!r}))" for i in range(6))
    spec = parse_vnnlib(_declare(6, 2) + bounds + "(assert (or (>= Y_1 Y_0)))")
    assert spec.label == 0 and spec.eps == pytest.approx(eps)
    # x0 = lower + eps where lower > 0, else upper - eps; 0.02 and 0.99 are clipped on one side
    np.testing.assert_allclose(spec.center, x0, atol=1e-12)


@pytest.mark.parametrize("text, message", [
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))(assert (>= Y_0 0))",
     "X_0 has no finite lower and upper bound"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1)", "unbalanced"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_3 1))", "X_3 is used but not declared"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= (* X_0 X_0) 1))", "non-linear"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 Y_0))", "mixing X and Y"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (or (<= X_0 1) (>= X_0 2)))",
     "disjunctive input regions"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))(assert (>= X_0 0))",
     "no output constraint"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (=> X_0 1))", "unsupported operator"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 0))(assert (>= X_0 1))"
     "(assert (<= Y_0 0))", "empty at X_0"),
])
def test_malformed_specs(text, message):
    with pytest.raises(DataError, match=message):
        parse_vnnlib(text, "bad.vnnlib")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="VNN-LIB file not found"):
        load_vnnlib(tmp_path / "none.vnnlib")


ACAS_BOXES = {  # (lower, upper) of X_0 and the box widths, from the files
    1: (0.6, 0.679857769), 2: (0.6, 0.679857769), 3: (-0.303531156, -0.298552812), 4: (-0.303531156, -0.298552812),
}


@pytest.mark.parametrize("prop", [1, 2, 3, 4])
def test_acasxu_props(vnncomp, prop):
    spec = load_vnnlib(vnncomp / "acasxu" / f"prop_{prop}.vnnlib")
    assert (spec.n_inputs, spec.n_outputs) == (5, 5)
    assert (spec.lower[0], spec.upper[0]) == pytest.approx(ACAS_BOXES[prop])
    assert isinstance(vnnlib_property(spec), LinearOutput) and spec.label is None and spec.eps is None
    rows = spec.unsafe_rows()
    assert len(rows) == 1
    C, d = rows[0]
    if prop == 1:  # unsafe if COC >= 3.9911...
        np.testing.assert_array_equal(C, [[-1, 0, 0, 0, 0]])
        assert d[0] == pytest.approx(-3.991125645861615)
    elif prop == 2:  # unsafe if COC is maximal: y_i - y_0 <= 0 for all i
        np.testing.assert_array_equal(C[:, 0], -1)
        np.testing.assert_array_equal(C[:, 1:], np.eye(4))
        assert np.all(d == 0)
    else:  # unsafe if COC is minimal
        np.testing.assert_array_equal(C[:, 0], 1)
        np.testing.assert_array_equal(C[:, 1:], -np.eye(4))
    if prop == 4:
        assert spec.lower[2] == spec.upper[2] == 0.0


@pytest.mark.parametrize("prop", [0, 1, 2, 3, 4])
def test_mnist_props(vnncomp, prop):
    specs = {eps: load_vnnlib(vnncomp / "mnistfc" / f"prop_{prop}_{eps}.vnnlib") for eps in ("0.03", "0.05")}
    for eps, spec in specs.items():
        assert (spec.n_inputs, spec.n_outputs) == (784, 10)
        assert isinstance(vnnlib_property(spec), Robustness) and vnnlib_property(spec).decision == "argmax"
        assert spec.label == MNIST_LABELS[prop] and spec.eps == float(eps)
        assert spec.center.min() >= 0 and spec.center.max() <= 1
        np.testing.assert_allclose(np.clip(spec.center - spec.eps, 0, 1), spec.lower, atol=1e-6)
        np.testing.assert_allclose(np.clip(spec.center + spec.eps, 0, 1), spec.upper, atol=1e-6)
        assert len(vnnlib_unsafe(spec).unsafe) == 9
    # both files describe balls around the same image (8-bit pixels)
    np.testing.assert_allclose(specs["0.03"].center, specs["0.05"].center, atol=1e-6)
    np.testing.assert_allclose(specs["0.05"].center * 255, np.round(specs["0.05"].center * 255), atol=1e-4)


def test_vnnlib_as_box_input_set(vnncomp):
    s = load_input_set(vnncomp / "acasxu" / "prop_3.vnnlib")
    assert s.is_box and s.X.shape == (1, 5) and len(s.sha256) == 64
    np.testing.assert_allclose(s.X[0], (s.box_lower + s.box_upper) / 2)
