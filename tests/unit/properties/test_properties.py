"""Safety properties: w(z) and the violation rule w <= c, their MinMaxSpec, make_property errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from saferisk.errors import ConfigError, DataError
from saferisk.properties import (Invariance, LinearOutput, Reachability, Robustness, Uncertainty,
                                 kl_uniform_softmax, make_property, targeted_away)


def T(*rows):
    """A batch of outputs (B, m)."""
    return torch.tensor(rows, dtype=torch.float64)


def V(*values):
    """One output vector (m,) or a vector of values."""
    return torch.tensor(values, dtype=torch.float64)


def test_robustness_argmax_margin_and_tie_counts_as_changed():
    bound = Robustness().bind(V(1.0, 3.0, 2.0))
    assert bound.decision == 1 and bound.threshold == 0.0
    z = T([1.0, 3.0, 2.0], [0.0, 1.0, 4.0], [3.0, 3.0, 0.0], [0.0, 2.5, 2.49])
    assert torch.allclose(bound.value(z), V(1.0, -3.0, 0.0, 0.01))
    assert bound.violated(z).tolist() == [False, True, True, False]  # tie -> changed decision
    assert bound.spec().exact
    assert torch.allclose(bound.spec().evaluate(z), bound.value(z) - bound.threshold)


def test_robustness_argmin_decision():
    bound = Robustness(decision="argmin").bind(V(1.0, 3.0, 2.0))
    assert bound.decision == 0
    z = T([1.0, 3.0, 2.0], [2.0, 1.0, 5.0], [1.0, 1.0, 3.0])
    # w = min_{i != j} z_i - z_j : the smallest output must stay the decision's
    assert torch.allclose(bound.value(z), V(1.0, -1.0, 0.0))
    assert bound.violated(z).tolist() == [False, True, True]


def test_robustness_target_classes_only_counts_a_decision_in_the_targets():
    bound = Robustness(target_classes=[2]).bind(V(3.0, 1.0, 2.0))
    assert bound.decision == 0
    z = T([3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [0.0, 1.0, 5.0], [0.0, 5.0, 5.0])
    # w = max_{i != 2} z_i - z_2: decision 1 (not a target) is no violation; a tie with 2 is
    assert torch.allclose(bound.value(z), V(1.0, 4.0, -4.0, 0.0))
    assert bound.violated(z).tolist() == [False, False, True, True]
    several = Robustness(target_classes=(1, 2)).bind(V(3.0, 1.0, 2.0))
    assert several.violated(z).tolist() == [False, True, True, True]
    with pytest.raises(ConfigError, match="only the decision"):
        Robustness(target_classes=[0]).bind(V(3.0, 1.0, 2.0))
    with pytest.raises(ConfigError, match="out of range"):
        Robustness(target_classes=[7]).bind(V(3.0, 1.0, 2.0))


def test_reachability_two_sided_and_weights():
    bound = Reachability(output=1, lower=1.0, upper=3.0).bind(torch.zeros(2, dtype=torch.float64))
    z = T([9.0, 2.0], [9.0, 0.5], [9.0, 4.0], [0.0, 1.0], [0.0, 3.0])
    assert torch.allclose(bound.value(z), V(1.0, -0.5, -1.0, 0.0, 0.0))
    assert bound.violated(z).tolist() == [False, True, True, True, True]
    one_sided = Reachability(output=0, upper=3.0).bind(torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(one_sided.value(T([-100.0, 0.0], [4.0, 0.0])), V(103.0, -1.0))
    weighted = Reachability(output=[1.0, -1.0], lower=0.0).bind(torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(weighted.value(T([3.0, 1.0], [1.0, 3.0])), V(2.0, -2.0))
    assert Reachability(output=0, lower=1.0).params() == {"kind": "reachability", "output": 0, "lower": 1.0, "upper": None}
    with pytest.raises(ConfigError, match="out of range"):
        Reachability(output=5, lower=0.0).bind(torch.zeros(2))
    with pytest.raises(ConfigError, match="entries"):
        Reachability(output=[1.0, 2.0, 3.0], lower=0.0).bind(torch.zeros(2))


def test_uncertainty_kl_matches_direct_formula_and_spec_is_a_sound_lower_bound():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(500, 7, generator=gen, dtype=torch.float64) * torch.tensor([0.01, 1.0, 5.0, 30.0]).repeat_interleave(125).unsqueeze(1).double()
    p = torch.softmax(z, dim=1)
    m = z.shape[1]
    direct = -(torch.log(m * p)).sum(dim=1) / m  # KL(U || p) = -(1/m) sum_i log(m p_i)
    assert torch.allclose(kl_uniform_softmax(z), direct, rtol=1e-9, atol=1e-9)
    assert torch.allclose(kl_uniform_softmax(torch.zeros(3, m, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64))
    eps = 0.05
    bound = Uncertainty(epsilon=eps).bind(z[0])
    assert bound.threshold == eps
    assert torch.allclose(bound.value(z), direct)
    spec = bound.spec()
    assert not spec.exact
    s = spec.evaluate(z)
    assert bool((s <= bound.value(z) - eps + 1e-9).all())  # sound: s(z) <= w(z) - c
    assert float((bound.value(z) - eps - s).min()) < 1e-3  # and tight for peaked outputs
    assert bound.violated(torch.zeros(1, m, dtype=torch.float64)).tolist() == [True]


def test_uncertainty_on_probability_outputs_equals_the_logit_version_and_its_spec_is_sound():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(400, 5, generator=gen, dtype=torch.float64) * 4
    p = torch.softmax(z, dim=1)
    eps = 0.2
    on_p = Uncertainty(epsilon=eps, outputs="probabilities")
    for centre in (p[0], p[7], torch.full((5,), 0.2, dtype=torch.float64)):
        bound = on_p.bind(centre)
        assert torch.allclose(bound.value(p), kl_uniform_softmax(z), atol=1e-9)  # no second softmax
        spec = bound.spec()
        assert not spec.exact
        # sound on the simplex and off it (bounds see any p in the output box, not only sums of 1)
        loose = torch.rand(400, 5, generator=gen, dtype=torch.float64) + 1e-3
        for points in (p, loose):
            assert bool((spec.evaluate(points) <= bound.value(points) - eps + 1e-9).all())
        assert abs(float(spec.evaluate(centre[None])[0]) - float(bound.value(centre[None])[0] - eps)) < 1e-9  # tight at p0
    with pytest.raises(ConfigError, match="outputs"):
        Uncertainty(outputs="logs")


def test_robustness_of_a_binary_classifier_with_one_output():
    prop = Robustness(binary_threshold=0.0)
    one, zero = prop.bind(torch.tensor([1.5])), prop.bind(torch.tensor([-0.5]))
    assert (one.decision, zero.decision) == (1, 0)
    z = torch.tensor([[2.0], [0.0], [-1.0]])
    assert one.value(z).tolist() == [2.0, 0.0, -1.0] and zero.value(z).tolist() == [-2.0, 0.0, 1.0]
    assert one.violated(z).tolist() == [False, True, True]  # a tie at the threshold counts as changed
    assert torch.equal(one.spec().evaluate(z), one.value(z))
    with pytest.raises(ConfigError, match="binary_threshold"):
        Robustness().bind(torch.tensor([0.3]))


def test_invariance_targeted_margin_against_the_label():
    bound = Invariance(k=2).bind(V(0.0, 5.0, 1.0), label=0)
    z = T([0.0, 5.0, 1.0], [3.0, 1.0, 2.0], [2.0, 2.0, 0.0], [1.0, 0.0, 0.5])
    # w = max_{i != y0} z_i - z_{y0}; a tie counts as y0
    assert torch.allclose(bound.value(z), V(5.0, -1.0, 0.0, -0.5))
    assert bound.violated(z).tolist() == [False, True, True, True]
    assert torch.allclose(targeted_away(0, 3).value(z), bound.value(z))
    with pytest.raises(ConfigError, match="labelled"):
        Invariance().bind(V(0.0, 1.0))
    with pytest.raises(ConfigError, match="out of range"):
        Invariance().bind(V(0.0, 1.0), label=4)
    with pytest.raises(ConfigError, match="k must be"):
        Invariance(k=0)


def test_centers_hook_x0_by_default_references_for_invariance():
    """Where radius.py measures: x0 itself by default; invariance: around each reference, with
    'the output is not x0's label' there."""
    x0, z = V(0.5, 0.5), V(0.0, 5.0, 1.0)
    assert Robustness().centers(x0, 1, None) == [(None, x0)]
    assert torch.equal(Robustness().bind_center(z, None, None).value(T([0.0, 5.0, 1.0])),
                       Robustness().bind(z).value(T([0.0, 5.0, 1.0])))
    refs = [(5, V(1.0, 1.0)), ("b", V(2.0, 2.0))]
    centers = Invariance().centers(x0, 0, refs, input_id="7")
    assert [(r, x.tolist()) for r, x in centers] == [("5", [1.0, 1.0]), ("b", [2.0, 2.0])]
    zs = T([0.0, 5.0, 1.0], [3.0, 1.0, 2.0])
    assert torch.allclose(Invariance().bind_center(z, 0, "5").value(zs), targeted_away(0, 3).value(zs))
    with pytest.raises(DataError, match="invariance needs labelled inputs"):
        Invariance().centers(x0, None, refs)
    with pytest.raises(DataError, match="input 7 has no reference input with a different label"):
        Invariance().centers(x0, 0, [], input_id="7")


def test_linear_output_positive_exactly_outside_the_unsafe_union():
    gen = torch.Generator().manual_seed(1)
    m = 3
    unsafe = [{"C": [[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]], "d": [0.5, 1.0]},
              {"C": [[-1.0, 0.0, 0.0]], "d": [-2.0]},
              {"C": [[0.3, 0.3, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "d": [0.0, 1.0, 0.2]}]
    bound = LinearOutput(unsafe=unsafe).bind(torch.zeros(m, dtype=torch.float64))
    y = torch.randn(4000, m, generator=gen, dtype=torch.float64) * 2
    w = bound.value(y)
    inside = torch.zeros(y.shape[0], dtype=torch.bool)
    for term in unsafe:  # brute force: y in U iff some conjunct holds entirely
        C, d = torch.tensor(term["C"], dtype=torch.float64), torch.tensor(term["d"], dtype=torch.float64)
        inside |= (y @ C.T <= d).all(dim=1)
    assert 0.05 < float(inside.double().mean()) < 0.95  # the check sees both sides
    assert torch.equal(w > 0, ~inside)
    assert torch.equal(bound.violated(y), inside)
    with pytest.raises(ConfigError, match="wrong length"):
        LinearOutput(unsafe=[{"C": [[1.0, 2.0]], "d": [0.0]}]).bind(torch.zeros(m))
    with pytest.raises(ConfigError, match="at least one"):
        LinearOutput(unsafe=())
    with pytest.raises(ConfigError, match="rows"):
        LinearOutput(unsafe=[{"C": [[1.0, 0.0, 0.0]], "d": [0.0, 1.0]}])


@pytest.mark.parametrize("spec, message", [
    ({"kind": "robustnes"}, "unknown property kind 'robustnes'"),
    ({}, "unknown property kind None"),
    ({"kind": "robustness", "epsilon": 0.1}, "has no parameter"),
    ({"kind": "robustness", "decision": "argmed"}, "argmax"),
    ({"kind": "uncertainty", "epsilon": 0.0}, "epsilon must be > 0"),
    ({"kind": "reachability", "output": 0}, "finite lower and/or upper"),
    ({"kind": "reachability", "output": 0, "lower": 2.0, "upper": 1.0}, "must be below"),
    ({"kind": "invariance", "k": 0}, "k must be >= 1"),
])
def test_make_property_errors_name_the_problem(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_property(spec)


def test_make_property_round_trips_params():
    for spec in ({"kind": "robustness", "decision": "argmin", "target_classes": [1, 2]},
                 {"kind": "uncertainty", "epsilon": 0.2}, {"kind": "invariance", "k": 5},
                 {"kind": "reachability", "output": 1, "lower": -1.0, "upper": None}):
        prop = make_property(spec)
        params = prop.params()
        assert params["kind"] == spec["kind"]
        assert make_property(params) == prop


def test_custom_property_from_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_props_mod.py").write_text(
        "def speed_margin(z):\n    return 10.0 - z[:, 0] - 2 * z[:, 1]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    prop = make_property({"kind": "custom", "function": "my_props_mod:speed_margin", "threshold": 1.0})
    bound = prop.bind(torch.zeros(2, dtype=torch.float64))
    z = T([1.0, 1.0], [5.0, 2.0], [9.0, 0.0])
    assert torch.allclose(bound.value(z), V(7.0, 1.0, 1.0))
    assert bound.violated(z).tolist() == [False, True, True]
    assert bound.spec() is None  # no linear form: certified bounds report why
    with pytest.raises(ConfigError, match="module:function"):
        make_property({"kind": "custom", "function": "no_colon"}).bind(torch.zeros(2))
    with pytest.raises(ConfigError, match="cannot import"):
        make_property({"kind": "custom", "function": "my_props_mod:missing"}).bind(torch.zeros(2))
    with pytest.raises(ConfigError, match="cannot import"):
        make_property({"kind": "custom", "function": "no_such_module_xyz:f"}).bind(torch.zeros(2))


@pytest.mark.parametrize("R", [1, 2])
def test_active_terms_give_each_rows_term_and_its_gradient_in_z(R):
    """MinMaxSpec.active_terms: the chosen term (or, at -1, the smallest) and the coefficients
    of its active piece, equal to autograd's gradient of that term in z (a spec with pieces
    R = 2, one masked; and one piece per term, the margins' form)."""
    from saferisk.properties.base import MinMaxSpec

    generator = torch.Generator().manual_seed(0)
    J, m = 4, 5
    A = torch.randn(J, R, m, generator=generator, dtype=torch.float64)
    b = torch.randn(J, R, generator=generator, dtype=torch.float64)
    mask = torch.ones(J, R, dtype=torch.bool)
    if R > 1:
        mask[2, 1] = False
    spec = MinMaxSpec(A, b, mask)
    z = torch.randn(6, m, generator=generator, dtype=torch.float64, requires_grad=True)
    terms = torch.tensor([-1, 0, 1, 2, 3, -1])
    values, coefficients = spec.active_terms(z.detach(), terms)
    groups = spec.groups(z)
    expected = torch.where(terms >= 0, groups.gather(1, terms.clamp_min(0).view(-1, 1)).squeeze(1), groups.amin(1))
    assert torch.equal(values, expected.detach())
    for row in range(6):
        (grad,) = torch.autograd.grad(expected[row], z, retain_graph=True)
        assert torch.allclose(coefficients[row], grad[row], rtol=0, atol=1e-12), row
        assert grad[row].abs().sum() > 0
