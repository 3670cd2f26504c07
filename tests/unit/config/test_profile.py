"""Placeholders (CHANGE_ME_...) left in a Snakemake profile: `saferisk validate-config --profile`
and the warnings the workflow's onstart prints for planned jobs' resources."""

from __future__ import annotations

import pytest
import yaml

from saferisk.cli import main
from saferisk.config.profile import job_resource_warnings, placeholders, profile_warnings
from saferisk.errors import ConfigError
from tests.paths import REPO

SLURM_PROFILE = REPO / "profiles" / "slurm"


def test_placeholders_found_at_any_depth_with_their_key():
    values = {"jobs": 100, "default-resources": {"slurm_account": "CHANGE_ME_ACCOUNT", "runtime": 30},
              "set-resources": {"r": {"slurm_partition": "gpu-CHANGE_ME"}}, "resources": ["gpu=2", "x=CHANGE_ME"]}
    assert placeholders(values) == [("default-resources.slurm_account", "CHANGE_ME_ACCOUNT"),
                                    ("set-resources.r.slurm_partition", "gpu-CHANGE_ME"),
                                    ("resources[1]", "x=CHANGE_ME")]
    assert placeholders({"slurm_account": "proj42", "change_me": 1}) == []


def test_the_shipped_slurm_profile_is_flagged_key_by_key():
    """Every CHANGE_ME value of profiles/slurm is named (and a filled-in copy is quiet)."""
    warnings = profile_warnings(SLURM_PROFILE)
    raw = (SLURM_PROFILE / "config.yaml").read_text()
    assert len(warnings) == raw.count('"CHANGE_ME') >= 3
    for key in ("default-resources.slurm_account is still 'CHANGE_ME_ACCOUNT'",
                "default-resources.slurm_partition is still 'CHANGE_ME_PARTITION'",
                "set-resources.compute_radius_shard.slurm_partition is still 'CHANGE_ME_GPU_PARTITION'"):
        assert any(key in w and "docs/cluster-guide.md" in w for w in warnings), (key, warnings)
    assert profile_warnings(REPO / "profiles" / "default") == []


def test_a_filled_in_copy_is_quiet_and_a_missing_profile_is_an_error(tmp_path):
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    profile["default-resources"].update(slurm_account="proj42", slurm_partition="cpu")
    profile["set-resources"]["compute_radius_shard"]["slurm_partition"] = "gpu"
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "config.yaml").write_text(yaml.safe_dump(profile))
    assert profile_warnings(tmp_path / "mysite") == []
    assert profile_warnings(tmp_path / "mysite" / "config.yaml") == []
    with pytest.raises(ConfigError, match="no profile there"):
        profile_warnings(tmp_path / "nope")


def test_job_resource_warnings_name_each_value_once_with_its_rules():
    jobs = [("compute_radius_shard", {"slurm_account": "CHANGE_ME_ACCOUNT", "mem_mb": 4000}),
            ("aggregate_model", {"slurm_account": "CHANGE_ME_ACCOUNT", "slurm_partition": "cpu"}),
            ("compute_radius_shard", {"slurm_account": "CHANGE_ME_ACCOUNT", "slurm_partition": "CHANGE_ME_GPU"})]
    warnings = job_resource_warnings(jobs)
    assert len(warnings) == 2
    assert warnings[0].startswith("resource slurm_account='CHANGE_ME_ACCOUNT' (rules aggregate_model, "
                                  "compute_radius_shard) is a placeholder")
    assert warnings[1].startswith("resource slurm_partition='CHANGE_ME_GPU' (rules compute_radius_shard)")
    assert job_resource_warnings([("all", {"mem_mb": 1000})]) == []


def test_validate_config_warns_about_the_profile(capsys, monkeypatch):
    """Warnings, not an error: exit 0, one line per placeholder after the config's own lines."""
    monkeypatch.chdir(REPO)
    assert main(["validate-config", "--profile", "profiles/slurm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("config OK: ")
    flagged = [line for line in out if "CHANGE_ME" in line]
    assert len(flagged) == 3 and all(line.startswith("warning: profiles/slurm/config.yaml: ") for line in flagged)
    assert main(["validate-config", "--profile", "profiles/default"]) == 0
    assert "CHANGE_ME" not in capsys.readouterr().out
    assert main(["validate-config", "--profile", "profiles/nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "saferisk: error: --profile profiles/nope: no profile there (expected a directory with config.yaml)")
