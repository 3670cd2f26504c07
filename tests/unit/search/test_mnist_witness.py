"""mnist-net_256x2, VNN-COMP 2021 props 0-4 (../shared/vnncomp; skipped when absent).

Known outcomes (../shared/vnncomp/README.md): every property is verified at L-inf 0.03, so
a witness closer than 0.03 would be a FALSE witness; props 2 and 4 are verified at 0.05 too;
props 0, 1, 3 have a counterexample at 0.05, so the search should find radius_upper <= 0.05.
x0 is recovered from the VNN-LIB box as lower + eps where lower > 0, else upper - eps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saferisk.data.domain import Domain
from saferisk.norms import distance
from saferisk.properties import Robustness
from saferisk.radius import compute_radii
from saferisk.search import SearchConfig

VERIFIED_AT_005 = {2, 4}
COUNTEREXAMPLE_AT_005 = {0, 1, 3}


@pytest.fixture(scope="module")
def mnist(shared_dir):
    folder = shared_dir / "vnncomp" / "mnistfc"
    if not (folder / "mnist-net_256x2.onnx").is_file():
        pytest.skip(f"{folder} is not available")
    from saferisk.models import load_model

    return folder, load_model(folder / "mnist-net_256x2.onnx")


def recover_x0(spec, eps):
    lower, upper = np.asarray(spec.lower, dtype=np.float64), np.asarray(spec.upper, dtype=np.float64)
    return np.where(lower > 0, lower + eps, upper - eps)


@pytest.mark.parametrize("prop", range(5))
def test_mnist_256x2_witnesses_agree_with_known_outcomes(mnist, tmp_path, prop):
    from saferisk.data.vnnlib import load_vnnlib

    folder, model = mnist
    spec = load_vnnlib(folder / f"prop_{prop}_0.05.vnnlib")
    x0 = recover_x0(spec, 0.05)
    assert np.allclose(np.clip(x0 - 0.05, 0, 1), spec.lower, atol=1e-6)  # the box is the ball ∩ [0, 1]
    domain = Domain.scalar(0.0, 1.0, 784)
    path = tmp_path / "w.npz"
    result = compute_radii(model, x0[None], Robustness(), "inf", 0.05, domain, labels=[spec.label], ids=[f"p{prop}"],
                           search=SearchConfig(), certify=False, seed=0, witness_path=path)[0]
    print(f"\nprop {prop}: estimate {result.radius_estimate:.4f} bracket [{result.radius_lower}, {result.radius_upper}] "
          f"exceeds upper: {result.estimate_exceeds_upper}, {result.evaluations} evals, {result.seconds:.2f} s")
    assert result.status == "ok"
    assert result.decision == spec.label  # the network classifies x0 correctly
    if result.radius_upper is not None:
        assert result.radius_upper >= 0.03, "a witness inside the ball verified at 0.03: a false witness"
        with np.load(path) as saved:
            x = torch.as_tensor(saved[f"p{prop}/witness"])
        z = model.forward_flat(x[None])[0]
        assert int(z.argmax()) != spec.label or float(z.max()) == float(z[spec.label])  # really misclassified
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        d = float(distance(x[None], torch.as_tensor(x0), "inf")[0])
        assert d == pytest.approx(result.radius_upper, rel=1e-5)
    if prop in VERIFIED_AT_005:
        assert result.radius_upper is None, "a witness inside the ball verified at 0.05: a false witness"
    if prop in COUNTEREXAMPLE_AT_005:
        assert result.radius_upper is not None and result.radius_upper <= 0.05, \
            f"prop {prop}: no counterexample found within 0.05 (one exists)"
