"""The config schema, parse-time checks, job expansion and `saferisk validate-config`."""

from __future__ import annotations

from tests.paths import REPO
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from saferisk.cli import main
from saferisk.config import build_plan, load_config_file, schema_keys
from saferisk.config.schema import check_schema
from saferisk.errors import ConfigError

ROOT = REPO
DEFAULT = ROOT / "config" / "config.yaml"


@pytest.fixture()
def default_config() -> dict:
    return load_config_file(DEFAULT)


def test_default_config_plan(default_config):
    plan = build_plan(default_config, ROOT)
    assert sorted(plan.models) == ["digits_cnn", "digits_mlp", "regression_net"]
    jobs = plan.radius_jobs()
    # 2 digits models x (robustness inf + 2, uncertainty, invariance) + reachability on the box
    assert len(jobs) == 9
    assert {j.property for j in jobs if j.model == "regression_net"} == {"reachability"}
    assert {(j.property, j.norm) for j in jobs if j.model == "digits_mlp"} == {
        ("robustness", "inf"), ("robustness", "2"), ("uncertainty", "inf"), ("invariance", "inf")}
    assert jobs[0].output == "results/radii/digits_mlp/digits/robustness-inf/shard-0.parquet"
    assert plan.input_sets["digits"].info.n_rows == 24
    assert plan.input_sets["regression_box"].info.n_rows == 4


def test_defaults_filled_everywhere(default_config):
    del default_config["properties"]["robustness"]["certify"]
    config = check_schema(default_config)
    assert config["models"]["digits_mlp"]["decision"] == "argmax"
    assert config["models"]["digits_mlp"]["format"] == "auto"
    assert config["input_sets"]["digits"]["samples"] == 0
    assert config["properties"]["robustness"]["certify"] == {"enabled": True}
    assert config["criteria"][0]["model"] is None
    assert config["seeds"]["search"] == 0


def test_every_schema_key_documented_in_readme():
    readme = (ROOT / "config" / "README.md").read_text()
    missing = [k for k in schema_keys() if not re.search(rf"`{re.escape(k)}`", readme)]
    assert not missing, f"config/README.md does not document: {missing}"


def test_every_schema_key_has_description_and_default():
    from saferisk.config import load_schema

    schema = load_schema()
    problems = []

    def walk(node, path, required=()):
        for key, sub in node.get("properties", {}).items():
            if "description" not in sub:
                problems.append(f"{path}.{key}: no description")
            if "default" not in sub and key not in required and path.count(".") < 4:
                problems.append(f"{path}.{key}: no default")
            walk(sub, f"{path}.{key}", sub.get("required", ()))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*", extra.get("required", ()))
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]", node["items"].get("required", ()))

    walk(schema, "", schema.get("required", ()))
    # selection.first/indices/per_class are alternatives: no default by design
    problems = [p for p in problems if ".selection." not in p]
    assert not problems, problems


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"]["digits_mlp"].__setitem__("format", "keras"),
     r"models\.digits_mlp\.format: 'keras' is not allowed; choose one of: auto, onnx"),
    (lambda c: c["models"]["digits_mlp"].__setitem__("colour", 1),
     r"models\.digits_mlp: unknown key\(s\) colour; allowed keys: .*class_names"),
    (lambda c: c["properties"]["robustness"].__setitem__("norms", ["inf", "3"]),
     r"properties\.robustness\.norms"),
    (lambda c: c["properties"]["robustness"].__setitem__("max_radius", -1),
     r"properties\.robustness\.max_radius"),
    (lambda c: c["sharding"].__setitem__("shard_size", 0), r"sharding\.shard_size"),
    (lambda c: c.__setitem__("device", "tpu"), r"device: 'tpu' is not allowed; choose one of: auto, cpu, cuda"),
    (lambda c: c["models"].__setitem__("bad-name", c["models"]["digits_mlp"]), r"name 'bad-name' is not allowed"),
    # `$` matches before a trailing newline: names are anchored with \Z
    (lambda c: c["models"].__setitem__("mnl\n", c["models"]["digits_mlp"]), r"name 'mnl\\n' is not allowed"),
    (lambda c: c["criteria"].append({"property": "robustness", "radius": float("nan"), "min_fraction": 0.5}),
     r"criteria\[\d+\]\.radius: must be a finite number, got nan"),
    (lambda c: c["criteria"].append({"property": "robustness", "radius": 0.1, "min_fraction": float("nan")}),
     r"criteria\[\d+\]\.min_fraction: must be a finite number, got nan"),
    (lambda c: c["properties"]["robustness"].__setitem__("certify", {"time_budget_s": float("nan")}),
     r"properties\.robustness\.certify\.time_budget_s: must be a finite number, got nan"),
    (lambda c: c["properties"]["robustness"].__setitem__("search", {"initial_mesh": float("inf")}),
     r"properties\.robustness\.search\.initial_mesh: must be a finite number, got inf"),
])
def test_schema_errors_name_the_key(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(ConfigError, match=message):
        build_plan(default_config, ROOT)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"]["digits_mlp"].__setitem__("input_sets", ["regression_box"]),
     r"models\.digits_mlp\.input_sets: input set 'regression_box' has 3 features per input, but model 'digits_mlp' takes 64"),
    (lambda c: c["models"]["digits_mlp"].__setitem__("input_sets", ["nope"]),
     r"models\.digits_mlp\.input_sets: unknown input set 'nope'"),
    (lambda c: c["models"]["digits_mlp"].__setitem__("properties", ["robustness", "ghost"]),
     r"models\.digits_mlp\.properties: unknown property 'ghost'"),
    (lambda c: c["models"]["regression_net"].__setitem__("properties", ["robustness"]),
     r"needs a classifier"),
    (lambda c: c["models"]["digits_mlp"].__setitem__("source", "missing/model.onnx"),
     r"models\.digits_mlp\.source: model file not found"),
    (lambda c: c["input_sets"]["digits"].__setitem__("selection", {"indices": [1, 5000]}),
     r"input_sets\.digits\.selection\.indices: index 5000 is out of range for 540 rows"),
    (lambda c: c["criteria"][0].__setitem__("norm", "1"),
     r"criteria\[0\]\.norm: property 'robustness' is not measured in norm 1"),
    (lambda c: c["criteria"][0].__setitem__("radius", 5.0), r"criteria\[0\]\.radius: 5.0 exceeds"),
    (lambda c: c["properties"]["reachability"].__setitem__("params", {"output": 0}),
     r"properties\.reachability\.params: reachability needs `lower` and/or `upper`"),
    (lambda c: c["models"]["digits_mlp"].update(source="demo:digits_mlp.safetensors"),
     r"models\.digits_mlp\.factory: a safetensors source needs a factory"),
    # what a radius job builds is built at parse time (Snakemake deletes a job's old outputs
    # when it starts it, so a job must never be the first to see a bad value)
    (lambda c: c["properties"]["robustness"].update(search={"budgte": 300}),
     r"properties\.robustness\.search: unknown key\(s\) budgte; allowed keys: attack_restarts, attack_steps, black_box_budget, budget, "),
    (lambda c: c["properties"]["robustness"].update(search={"mode": "gpss"}),
     r"properties\.robustness\.search: search mode must be one of gps, fast"),
    (lambda c: c["properties"]["robustness"].update(certify={"methd": "crown"}),
     r"properties\.robustness\.certify: unknown key\(s\) methd; allowed keys: .*enabled"),
    (lambda c: c["properties"]["robustness"].update(certify={"method": "crwn"}),
     r"properties\.robustness\.certify: certify method must be one of"),
    (lambda c: c["properties"]["reachability"]["params"].update(lower=5, upper=1),
     r"properties\.reachability\.params: reachability lower \(5\.0\) must be below upper"),
    (lambda c: c["properties"]["uncertainty"]["params"].update(epsilon=-1),
     r"properties\.uncertainty\.params: uncertainty epsilon must be > 0"),
    (lambda c: c["properties"]["robustness"].update(max_radius=float("nan")),
     r"properties\.robustness\.max_radius: must be a finite number > 0"),
    (lambda c: c["models"]["digits_mlp"].update(domain={"lower": float("nan"), "upper": 1}),
     r"models\.digits_mlp\.domain: domain bounds must be numbers"),
    (lambda c: c["models"]["digits_mlp"].update(domain={"lower": 1, "upper": 0}),
     r"models\.digits_mlp\.domain: domain lower > upper at feature 0"),
    (lambda c: c["models"]["digits_mlp"].update(domain={"lower": [0, 0, 0], "upper": [1, 1, 1]}),
     r"models\.digits_mlp\.domain: domain has 3/3 bounds, the model has 64 input features"),
])
def test_cross_key_errors_at_parse_time(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(ConfigError, match=message):
        build_plan(default_config, ROOT)


def test_invariance_needs_labels(tmp_path, default_config):
    np.savez(tmp_path / "nolabels.npz", X=np.random.default_rng(0).random((5, 64)))
    default_config["input_sets"]["digits"] = {"path": str(tmp_path / "nolabels.npz")}
    with pytest.raises(ConfigError, match=r"'invariance' \(invariance\) needs labels, input set 'digits' has none"):
        build_plan(default_config, ROOT)


def test_norm_list_and_shards_expand(tmp_path, default_config):
    cfg = copy.deepcopy(default_config)
    cfg["properties"]["robustness"]["norms"] = ["linf", "l2", 1]
    cfg["sharding"]["shard_size"] = 10
    cfg["input_sets"]["digits"]["selection"] = {"first": 25}
    plan = build_plan(cfg, ROOT)
    jobs = [j for j in plan.radius_jobs() if j.model == "digits_mlp" and j.property == "robustness"]
    assert sorted({j.norm for j in jobs}) == ["1", "2", "inf"]
    assert sorted({j.shard for j in jobs}) == [0, 1, 2]
    assert plan.input_sets["digits"].shard_positions(2) == [20, 21, 22, 23, 24]


def test_shard_fingerprints_only_change_for_changed_rows(tmp_path, default_config):
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 64)), rng.integers(0, 10, 30)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    cfg = copy.deepcopy(default_config)
    cfg["input_sets"]["digits"] = {"path": str(tmp_path / "d.npz")}
    cfg["sharding"]["shard_size"] = 10
    before = build_plan(cfg, ROOT).input_sets["digits"]
    X2 = np.concatenate([X, rng.random((5, 64))])
    np.savez(tmp_path / "d.npz", X=X2, y=np.concatenate([y, [1] * 5]))
    after = build_plan(cfg, ROOT).input_sets["digits"]
    assert (before.n_shards, after.n_shards) == (3, 4)
    assert [before.shard_fingerprint(k) for k in range(3)] == [after.shard_fingerprint(k) for k in range(3)]
    X2[15, 0] += 0.5
    np.savez(tmp_path / "d.npz", X=X2, y=np.concatenate([y, [1] * 5]))
    changed = build_plan(cfg, ROOT).input_sets["digits"]
    assert changed.shard_fingerprint(0) == before.shard_fingerprint(0)
    assert changed.shard_fingerprint(1) != before.shard_fingerprint(1)


def test_validate_config_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["validate-config"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "config OK: 3 models, 2 input sets, 4 properties -> 9 radius jobs",
        *(f"  model {m}: saferisk graph (gradients, certified bounds)" for m in ("digits_mlp", "digits_cnn", "regression_net"))]
    bad = yaml.safe_load(DEFAULT.read_text())
    bad["properties"]["robustness"]["scale"] = "pixels"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saferisk: error: invalid config: properties.robustness.scale: 'pixels' is not allowed; "
                          "choose one of: input, domain")
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "broken.yaml").write_text("models: [\n")
    assert main(["validate-config", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_validate_config_loads_each_model_and_says_what_covers_it(tmp_path, capsys, monkeypatch):
    """Each model is loaded before any job: the evaluator and the bound support are printed, and a
    model nothing can run stops validation naming it."""
    import torch

    from saferisk.models.load import module_to_onnx

    class Last(torch.nn.Module):  # a cumulative sum over the steps (CumSum): onnxruntime only
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(4, 8)

        def forward(self, x):
            return self.embed(x).cumsum(1)[:, -1, :3]

    (tmp_path / "rnn.onnx").write_bytes(module_to_onnx(Last().eval(), (5, 4)))
    class RootScaled(torch.nn.Module):  # sqrt of a variable: executed, no relaxation (no bound)
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(20, 6)

        def forward(self, x):
            return torch.sqrt(self.linear(x).abs() + 1.0)

    (tmp_path / "norm.onnx").write_bytes(module_to_onnx(RootScaled().eval(), (20,)))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 20)))
    config = {"models": {"rnn": {"source": "rnn.onnx", "input_sets": ["x"]},
                         "norm": {"source": "norm.onnx", "input_sets": ["x"]}},
              "input_sets": {"x": {"path": "x.npy"}},
              "properties": {"robustness": {"kind": "robustness", "norms": ["inf"], "max_radius": 0.1}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert main(["validate-config", "c.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("config OK: 2 models") and len(out) == 3
    lines = {line.split(":")[0].strip(): line for line in out[1:]}
    assert lines["model rnn"].startswith("  model rnn: onnxruntime evaluator (estimate and witness by forward passes; "
                                         "no certified bound: the graph reader does not support CumSum")
    assert lines["model norm"] == ("  model norm: saferisk graph (gradients); no certified bound: unsupported operation "
                                   "'sqrt' in node '/Sqrt'")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    (tmp_path / "rnn.onnx").write_bytes(model.SerializeToString())  # an operator nothing here can run
    assert main(["validate-config", "c.yaml"]) == 2
    err = capsys.readouterr().err
    assert "models.rnn: the model cannot be loaded: the graph reader does not support com.example.Mystery" in err
    assert "onnxruntime cannot run it either" in err


VNNLIB_BOX = """; a 3-input region with a robustness-style output assertion
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0.5))
(assert (<= X_0 1.5))
(assert (>= X_1 -1.0))
(assert (<= X_1 0.0))
(assert (>= X_2 200.0))
(assert (<= X_2 300.0))
(assert (<= Y_0 -1.5))
"""


def test_input_set_box_from_a_vnnlib_file(default_config, tmp_path):
    (tmp_path / "region.vnnlib").write_text(VNNLIB_BOX)
    default_config["input_sets"]["regression_box"]["box"] = str(tmp_path / "region.vnnlib")
    plan = build_plan(default_config, ROOT)
    info = plan.input_sets["regression_box"].info
    assert info.n_rows == 4 and info.n_features == 3
    assert info.box == {"lower": [0.5, -1.0, 200.0], "upper": [1.5, 0.0, 300.0]}
    (tmp_path / "broken.vnnlib").write_text("(assert (<= X_0 1.0)")
    default_config["input_sets"]["regression_box"]["box"] = str(tmp_path / "broken.vnnlib")
    with pytest.raises(ConfigError, match=r"input_sets\.regression_box\.box: .*broken\.vnnlib"):
        build_plan(default_config, ROOT)


def test_every_schema_problem_is_listed_and_norm_choices_are_complete(default_config):
    default_config["sharding"] = {"shard_sise": 3}
    default_config["properties"]["robustness"]["norms"] = [3]
    with pytest.raises(ConfigError) as exc:
        build_plan(default_config, ROOT)
    text = str(exc.value)
    assert "sharding: unknown key(s) shard_sise; allowed keys: shard_size" in text
    assert "properties.robustness.norms" in text and "choose one of: inf, 2, 1" in text
    assert "more problem" not in text


def test_torch_pt_files_are_told_apart_at_parse_time(default_config, tmp_path):
    """A .pt is a TorchScript archive (needs input_shape) or a state_dict (needs a factory)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 64)), tmp_path / "scripted.pt")
    for name, message in (("weights.pt", r"models\.digits_mlp\.factory: a state_dict source needs a factory"),
                          ("scripted.pt", r"models\.digits_mlp\.input_shape: a TorchScript model needs")):
        config = copy.deepcopy(default_config)
        config["models"]["digits_mlp"]["source"] = str(tmp_path / name)
        with pytest.raises(ConfigError, match=message):
            build_plan(config, ROOT)


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 64)), "holds no inputs"),
    (np.where(np.arange(64 * 3).reshape(3, 64) == 70, np.nan, 0.5), "row 1 feature 6 is nan"),
    (np.array([["a"] * 64] * 2), "the inputs are not numbers"),
])
def test_bad_data_is_a_parse_time_error(default_config, tmp_path, array, message):
    """Found when the config is read: a failing input-shard job would first delete its old shard."""
    np.savez(tmp_path / "bad.npz", X=array)
    default_config["input_sets"]["digits"] = {"path": str(tmp_path / "bad.npz")}
    with pytest.raises(ConfigError, match=rf"input_sets\.digits\.path: .*{message}"):
        build_plan(default_config, ROOT)


def test_a_radius_beyond_the_domain_diameter_is_a_warning(default_config):
    """L-inf diameter of [0, 1]^64 is 1, its L2 diameter 8: max_radius 5 covers the whole
    domain in L-inf (warned), not in L2; legal either way (no error)."""
    default_config["properties"]["robustness"]["max_radius"] = 5.0
    default_config["criteria"] = []
    plan = build_plan(default_config, ROOT)
    linf = [w for w in plan.warnings if "properties.robustness.max_radius" in w and "(Linf)" in w]
    assert linf and "exceeds the diameter 1 (Linf)" in linf[0]
    assert not [w for w in plan.warnings if "(L2)" in w]
    default_config["properties"]["robustness"]["max_radius"] = 0.3
    assert not [w for w in build_plan(default_config, ROOT).warnings if "robustness" in w]
