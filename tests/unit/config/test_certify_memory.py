"""Bounded certification memory: the estimate from the graph (saferisk.bounds.memory), what a
radius job asks the scheduler for (radius_job_mem_mb: auto / explicit / retries), and the
granted memory becoming the budget that each result records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saferisk.bounds import memory
from saferisk.bounds.config import CertifyConfig
from saferisk.config.runtime import (RADIUS_JOB_BASE_MB, certify_config, certify_memory_limit_mb, certify_memory_mb,
                                     radius_job_mem_mb)
from saferisk.errors import ConfigError
from tests.conftest import random_mlp
from tests.paths import REPO

DEMO = REPO / "saferisk" / "demo"
CEILING = memory.AUTO_CEILING_MB


def _profile(model) -> dict:
    return memory.graph_profile(model.graph)


def _property(**certify) -> dict:
    return {"kind": "robustness", "params": {}, "max_radius": 0.1, "certify": certify}


@pytest.fixture(scope="module")
def resnet18_graph():
    """The CIFAR ResNet-18 (width 16, 3x32x32) of tests/real_networks.py, read as the workflow
    reads an exported artifact."""
    from saferisk.models.load import module_to_onnx, read_forward
    from tests.real_networks import _randomised, cifar_resnet18

    module = _randomised(cifar_resnet18(16), 0, weight_scale=1.0)
    return read_forward(module_to_onnx(module, (3, 32, 32))).graph


# ------------------------------------------------------------------ the estimate


def test_estimate_grows_with_the_network():
    config = CertifyConfig()
    profiles = [_profile(random_mlp([100, w, w, 10])) for w in (32, 128, 512, 1024)]
    crown = [memory.crown_bytes(p, config) for p in profiles]
    assert crown == sorted(crown) and len(set(crown)) == len(crown)  # strictly increasing
    needs = [memory.need_mb(p, config) for p in profiles]
    assert needs == sorted(needs) and needs[-1] > needs[0]
    assert all(memory.AUTO_FLOOR_MB <= n for n in needs)
    # more radii bounded together, more rows at once
    assert memory.crown_bytes(profiles[-1], CertifyConfig(grid_size=16)) == 2 * crown[-1]


def test_small_mlp_requests_far_less_than_the_ceiling():
    prof = _profile(random_mlp([64, 32, 32, 10]))
    need = memory.need_mb(prof, CertifyConfig())
    assert need <= CEILING // 32
    assert radius_job_mem_mb(_property(), manifest={"certify_memory": prof}) == RADIUS_JOB_BASE_MB + need


def test_estimate_is_what_the_engine_needs_for_one_pass_per_node():
    """At the estimate every node's CROWN rows (at most crown_max_neurons) fit one pass of the
    engine's own rows_per_pass; one MiB less and the largest node needs two."""
    from saferisk.bounds.engine import BoundEngine

    model = random_mlp([100, 600, 600, 10])
    engine = BoundEngine(model.graph)
    config = CertifyConfig(crown_max_neurons=500)
    prof = memory.profile(engine)
    need = memory.need_mb(prof, config)
    assert need > memory.AUTO_FLOOR_MB
    names = [n for n in engine.pre_nodes if n != engine.input_name]

    def passes(mb):
        engine.memory_bytes = mb << 20
        out = []
        for name in names:
            rows = min(500, int(torch.Size(engine.shapes[name]).numel()))
            signs = 1 if name in engine.affine_only else 2
            out.append(-(-rows // engine.rows_per_pass(name, config.grid_size, signs)))
        return out

    assert max(passes(need)) == 1
    assert max(passes(need - 1)) == 2


def test_input_splitting_counts_its_batch():
    """Inputs of at most input_split_max_dim features: BaB bounds 256 sub-boxes at once."""
    prof = _profile(random_mlp([5, 50, 50, 50, 5]))  # ACAS Xu-like
    with_bab = memory.crown_bytes(prof, CertifyConfig())
    without = memory.crown_bytes(prof, CertifyConfig(method="alpha-crown"))
    assert with_bab == without * 256 // CertifyConfig().grid_size


def test_cifar_resnet18_gets_the_ceiling_and_its_forward_bounds(resnet18_graph):
    """Its need is above the ceiling; the ceiling holds its forward bounds (7680 MiB), which the
    old 2 GiB default did not: the engine now takes the forward path with the default config."""
    from saferisk.bounds.engine import BoundEngine

    config = CertifyConfig()
    prof = memory.graph_profile(resnet18_graph)
    assert memory.need_mb(prof, config) > CEILING
    assert memory.auto_mb(prof, config) == CEILING
    assert 2048 < memory.forward_bytes(prof, config) >> 20 <= CEILING
    assert radius_job_mem_mb(_property(), manifest={"certify_memory": prof}) == RADIUS_JOB_BASE_MB + CEILING
    engine = BoundEngine(resnet18_graph)
    assert memory.profile(engine) == prof  # the engine at certification time, the export's profile
    used, need = config.apply_limits(engine, None)
    assert used == CEILING and need == memory.need_mb(prof, config) and engine.forward_is_cheaper()
    # granted less than the forward bounds need: the cheaper CROWN path, with that budget
    used, _ = config.with_memory_limit(4096).apply_limits(engine, None)
    assert used == 4096 and engine.memory_bytes == 4096 << 20 and not engine.forward_is_cheaper()


def test_unsupported_graph_needs_the_floor():
    assert memory.need_mb(None, CertifyConfig()) == memory.AUTO_FLOOR_MB


# ------------------------------------------------------------------ config and the job's request


def test_memory_mb_auto_and_explicit_values():
    assert CertifyConfig(memory_mb="auto").memory_mb is None
    assert certify_config({"memory_mb": "auto"}).memory_mb is None
    assert certify_config({"memory_mb": 512}).memory_mb == 512
    for bad in ("lots", 8, 1.5, True):
        with pytest.raises(ConfigError, match="memory_mb"):
            certify_config({"memory_mb": bad}, "properties.p.certify")
    with pytest.raises(ConfigError, match="unknown key.*memory_limit_mb"):  # set by the job, not the config
        certify_config({"memory_limit_mb": 100})


def test_radius_job_mem_mb_auto_explicit_and_attempts(tmp_path):
    prof = _profile(random_mlp([64, 32, 32, 10]))
    need = memory.need_mb(prof, CertifyConfig())
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"artifact_sha256": "x", "certify_memory": prof}))
    for spec in (_property(), _property(memory_mb="auto"), _property(memory_mb=None), _property(method="crown")):
        assert radius_job_mem_mb(spec, 1, manifest=str(path)) == RADIUS_JOB_BASE_MB + need
        assert radius_job_mem_mb(spec, 2, manifest=path) == 2 * (RADIUS_JOB_BASE_MB + need)
        assert radius_job_mem_mb(spec, 3, manifest=path) == 3 * (RADIUS_JOB_BASE_MB + need)
    # an explicit value wins over the estimate, as before
    assert radius_job_mem_mb(_property(memory_mb=7680), 1, manifest=path) == 7680 + RADIUS_JOB_BASE_MB
    assert radius_job_mem_mb(_property(memory_mb=16), 2, manifest=path) == 2 * (16 + RADIUS_JOB_BASE_MB)
    # the estimate follows the property's certify settings
    assert certify_memory_mb(_property(grid_size=64), path) >= certify_memory_mb(_property(), path)
    # no certification: the rest of the job only
    assert radius_job_mem_mb({"kind": "robustness", "certify": {"enabled": False}}, 2, manifest=path) == \
        2 * RADIUS_JOB_BASE_MB
    # the manifest not written yet (dry run), or written before the estimate existed: the ceiling
    assert radius_job_mem_mb(_property(), 1, manifest=tmp_path / "missing.json") == RADIUS_JOB_BASE_MB + CEILING
    assert radius_job_mem_mb(_property(), 1, manifest={"artifact_sha256": "x"}) == RADIUS_JOB_BASE_MB + CEILING
    assert radius_job_mem_mb(_property(), 1) == RADIUS_JOB_BASE_MB + CEILING
    # a model certified bounds cannot run on: the floor
    assert radius_job_mem_mb(_property(), 1, manifest={"certify_memory": None}) == \
        RADIUS_JOB_BASE_MB + memory.AUTO_FLOOR_MB


def test_granted_memory_limit():
    assert certify_memory_limit_mb(None) is None
    assert certify_memory_limit_mb("<TBD>") is None
    assert certify_memory_limit_mb(RADIUS_JOB_BASE_MB + 700) == 700
    assert certify_memory_limit_mb(1000) == 16  # less than the rest of the job: the smallest budget


# ------------------------------------------------------------------ the budget used, per input


def test_granted_memory_below_the_need_becomes_the_recorded_budget():
    from saferisk.data.domain import Domain
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radius
    from saferisk.search import SearchConfig

    model = random_mlp([100, 400, 400, 10], seed=1)
    need = memory.need_mb(_profile(model), CertifyConfig())
    assert need > memory.AUTO_FLOOR_MB
    x0 = torch.rand(100, generator=torch.Generator().manual_seed(0))
    domain = Domain.from_bounds(-10.0, 10.0, 100)
    runs = {}
    for name, config in {"auto": CertifyConfig(method="crown", work_budget=30),
                         "granted": CertifyConfig(method="crown", work_budget=30).with_memory_limit(need - 20),
                         "explicit": CertifyConfig(method="crown", work_budget=30, memory_mb=need + 5)
                         .with_memory_limit(need - 20)}.items():
        runs[name] = compute_radius(model, x0, Robustness(), "inf", 0.5, domain, search=SearchConfig(budget=500),
                                    certify=config).to_dict()["extra"]
    assert runs["auto"]["certify_memory_mb"] == need and "certify_memory_need_mb" not in runs["auto"]
    assert runs["granted"]["certify_memory_mb"] == need - 20
    assert runs["granted"]["certify_memory_need_mb"] == need  # said per input: the budget was below the need
    assert runs["explicit"]["certify_memory_mb"] == need + 5  # an explicit memory_mb wins
    # a smaller budget bounds in more passes: more bound passes spent on the same search
    assert runs["granted"]["certify_work"] >= runs["auto"]["certify_work"]


def test_radius_step_keeps_to_the_granted_memory(tmp_path, monkeypatch):
    """The workflow's radius step: mem_mb (resources.mem_mb) less the rest of the job is the
    budget of `auto`; the export's manifest carries the profile the request is made from."""
    import pandas as pd

    from saferisk import layout
    from saferisk.data.spec import InputSetSpec, describe
    from saferisk.steps.export import export_model_step
    from saferisk.steps.inputs import prepare_input_shard
    from saferisk.steps.radius import radius_shard

    monkeypatch.chdir(tmp_path)
    spec = {"source": "demo:digits_mlp.onnx", "format": "auto", "factory": None, "input_shape": None,
            "domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits", "decision": "argmax", "class_names": None}
    manifest = export_model_step("m", spec, str(DEMO / "digits_mlp.onnx"), str(Path(layout.model_artifact("m")).parent))
    prop = {"kind": "robustness", "params": {}, "max_radius": 0.2, "scale": "input",
            "search": {"mode": "fast", "budget": 200, "n_starts": 1, "n_random": 32, "max_iterations": 10},
            "certify": {"method": "ibp", "work_budget": 10}}
    need = memory.need_mb(manifest["certify_memory"], certify_config(prop["certify"]))
    assert radius_job_mem_mb(prop, 1, manifest=layout.model_manifest("m")) == RADIUS_JOB_BASE_MB + need
    seeds = {"selection": 0, "samples": 0, "search": 0}
    entry = {"path": "demo:digits_test.npz", "selection": {"first": 2}}
    info = describe(InputSetSpec.from_config("digits", entry, tmp_path, seeds))
    prepare_input_shard("digits", entry, seeds, info.positions, info.shard_fingerprint(0, 2), layout.input_shard("digits", 0))
    recorded = {}
    for mem_mb in (RADIUS_JOB_BASE_MB + need, 2 * (RADIUS_JOB_BASE_MB + need), RADIUS_JOB_BASE_MB + 20):
        out = tmp_path / f"shard-{mem_mb}.parquet"
        radius_shard(model_name="m", model_path=layout.model_artifact("m"), manifest_path=layout.model_manifest("m"),
                     model_spec={k: spec[k] for k in ("decision", "domain", "output_kind")}, input_set="digits",
                     shard_path=layout.input_shard("digits", 0), property_name="robustness", property_spec=prop,
                     norm="inf", seed=0, device="cpu", out_path=str(out), witness_path=str(tmp_path / f"w-{mem_mb}.npz"),
                     witness_ref="w", mem_mb=mem_mb)
        recorded[mem_mb] = [json.loads(e) for e in pd.read_parquet(out)["extra"]]
    granted, retried, small = recorded.values()
    assert all(e["certify_memory_mb"] == need and "certify_memory_need_mb" not in e for e in granted)
    assert retried == granted  # a retry's doubled memory changes nothing
    assert all(e["certify_memory_mb"] == 20 and e["certify_memory_need_mb"] == need for e in small)
