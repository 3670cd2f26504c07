"""A real single-node SLURM cluster runs a tiny audit's DAG through sbatch with a copy of
profiles/slurm, directly and through workflow/nightly.sh. Runs wherever it can: as root with the
Debian packages slurm-wlm + munge (`make test` installs them when root, so CI runs it);
skipped elsewhere, or with SAFERISK_TEST_SLURM=0.

The test starts munged, slurmctld and slurmd itself and stops them by the PIDs it started.

Two things of the minimal cluster that a site cluster does not share (found by running it):
- no accounting (no slurmdbd): `sacct` exits 1 ("Slurm accounting storage is disabled"). The
  slurm executor plugin polls `sacct` by default; when every attempt fails it silently stops
  tracking the jobs ("No active jobs") and Snakemake waits forever. The test profile polls with
  `squeue --states=all` instead (`slurm-status-command: squeue`; finished jobs stay visible to
  squeue for MinJobAge seconds, set well above the polling interval).
- the config lives in a tmp dir (SLURM_CONF), not in /etc/slurm. Inside a batch job the
  jobstep plugin runs the rule through a nested `srun`, but drops every SLURM_* variable,
  SLURM_CONF included, from srun's environment, so srun finds no config ("Could not establish a
  configuration source") and every job fails. A two-line `srun` on PATH puts SLURM_CONF back
  and execs the real srun (a site node has /etc/slurm/slurm.conf, which srun finds by itself).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_support import setup_workdir, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture()
def slurm_cluster(tmp_path):
    if os.environ.get("SAFERISK_TEST_SLURM") == "0":
        pytest.skip("SAFERISK_TEST_SLURM=0: no SLURM cluster started")
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "squeue", "srun")
               if not shutil.which(b)]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and slurm-wlm + munge (missing: {', '.join(missing) or 'root'})")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    host = socket.gethostname().split(".")[0]
    state = tmp_path / "slurm"
    for sub in ("state", "spool", "log", "munge"):
        (state / sub).mkdir(parents=True)
    key = state / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    socket_path = state / "munge" / "munge.socket"
    cpus = os.cpu_count() or 2
    # Jobs ask for 4000 MB x attempt (retries: 2 in the profile): room for a retry where the
    # machine has it; a RealMemory above the machine's memory would drain the node.
    phys_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    real_memory = max(4000, min(12000, phys_mb - 512))
    conf = state / "slurm.conf"
    conf.write_text(f"""ClusterName=saferisk-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
StateSaveLocation={state / 'state'}
SlurmdSpoolDir={state / 'spool'}
SlurmctldPidFile={state / 'slurmctld.pid'}
SlurmdPidFile={state / 'slurmd.pid'}
SlurmctldLogFile={state / 'log' / 'slurmctld.log'}
SlurmdLogFile={state / 'log' / 'slurmd.log'}
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} CPUs={cpus} RealMemory={real_memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    bin_dir = state / "bin"  # srun that finds the config (see the module docstring)
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec {shlex.quote(shutil.which('srun'))} \"$@\"\n")
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs = [subprocess.Popen(["munged", "-F", "--force", f"--key-file={key}", f"--socket={socket_path}",
                               f"--pid-file={state / 'munge' / 'munged.pid'}", f"--log-file={state / 'log' / 'munged.log'}",
                               f"--seed-file={state / 'munge' / 'seed'}"], env=env)]
    time.sleep(1)
    procs.append(subprocess.Popen(["slurmctld", "-D", "-f", str(conf)], env=env))
    time.sleep(2)
    procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if "idle" in out:
                break
            time.sleep(1)
        else:
            pytest.fail(f"the SLURM node did not come up: {(state / 'log' / 'slurmctld.log').read_text()[-2000:]}")
        yield env
    finally:
        for proc in reversed(procs):  # only the daemons this test started
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _test_profile(wd: Path) -> None:
    """profiles/test-slurm: profiles/slurm for the test node (its account and partition, no GPU)."""
    profile = yaml.safe_load((wd / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(slurm_account="root", slurm_partition="debug")
    radius = profile["set-resources"]["compute_radius_shard"]
    radius.update(slurm_partition="debug", gpu=0)  # the test node has no GPU
    radius.pop("gpu_model", None)
    radius.pop("cpus_per_gpu", None)
    profile["latency-wait"] = 10
    # No slurmdbd here: job states come from squeue (see the module docstring), polled every few
    # seconds instead of the default 40 s.
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 5
    # The plugin deletes the SLURM log of every successful job unless told to keep them.
    profile["slurm-keep-successful-logs"] = True
    (wd / "profiles/test-slurm").mkdir()
    (wd / "profiles/test-slurm/config.yaml").write_text(yaml.safe_dump(profile))


def test_tiny_audit_through_sbatch_nightly_then_nothing(tmp_path, slurm_cluster):
    """workflow/nightly.sh as cron starts it: the first night submits every radius job through
    sbatch (each runs under slurmd and exits 0) and writes the tables and reports; the next
    night, with nothing changed, submits nothing."""
    import sys

    config = tiny_config(models=("mlp_a",), n_rows=2, shard_size=1)
    wd = setup_workdir(tmp_path / "wf", config, n_rows=2)
    _test_profile(wd)
    env = {**slurm_cluster, "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake")}
    logs = []
    for night in range(2):
        proc = subprocess.run(["bash", "workflow/nightly.sh", "profiles/test-slurm"], cwd=wd, env=env,
                              capture_output=True, text=True, timeout=600)
        log = (wd / "logs" / "nightly" / "latest.log").read_text()
        assert proc.returncode == 0, log[-4000:]
        assert "finished with exit status 0" in log
        logs.append(log)
        time.sleep(1.1)  # the next night gets its own dated log
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert len(table) == 2 * 2
    assert sorted(zip(table["model"], table["property"], table["shard"])) == [
        ("mlp_a", prop, f"shard-{i}.parquet") for prop in ("robustness", "uncertainty") for i in range(2)]
    assert (wd / "results/reports/mlp_a.pdf").is_file() and (wd / "results/reports/summary.pdf").is_file()
    # Every non-local job went through sbatch, ran under slurmd (exit 0) and left its SLURM log
    # (.snakemake/slurm_logs/rule_<rule>/<wildcards>/<slurm jobid>.log).
    slurm_logs = sorted((wd / ".snakemake" / "slurm_logs").rglob("*.log"))
    per_rule: dict[str, int] = {}
    for path in slurm_logs:
        per_rule[path.parent.parent.name] = per_rule.get(path.parent.parent.name, 0) + 1
    assert per_rule == {"rule_compute_radius_shard": 4}, slurm_logs  # export, inputs, reports: login node
    # What runs where, as a real run prints it (a dry run does not say: docs/cluster-guide.md):
    # the radius jobs as `rule`, everything else as `localrule` (never submitted).
    run_log = logs[0].split("\n== run\n", 1)[1]
    assert set(re.findall(r"^rule (\w+):$", run_log, re.M)) == {"compute_radius_shard"}, run_log[-4000:]
    assert {"export_model", "prepare_input_shard", "describe_input_set", "aggregate_model", "combine_tables",
            "report_model", "report_summary", "all"} <= set(re.findall(r"^localrule (\w+):$", run_log, re.M))
    assert "CHANGE_ME" not in run_log  # the test profile has real values: no placeholder warning
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", logs[0])
    assert sorted(submitted) == sorted(path.stem for path in slurm_logs), logs[0][-4000:]
    ctld_log = (Path(slurm_cluster["SLURM_CONF"]).parent / "log" / "slurmctld.log").read_text()
    for jobid in submitted:
        assert f"_job_complete: JobId={jobid} WEXITSTATUS 0" in ctld_log, ctld_log[-3000:]
    assert "submitted with SLURM jobid" not in logs[1] and "Nothing to be done" in logs[1], logs[1][-3000:]
    assert len(list((wd / "logs" / "nightly").glob("*Z.log"))) == 2


def test_change_me_values_are_warned_about_before_any_job(tmp_path):
    """The shipped SLURM profile's CHANGE_ME_... resources: a run names each one (and the rules
    that carry it) at its start. No cluster needed: the profile's default-resources are given
    to a local run of the export step."""
    import sys

    wd = setup_workdir(tmp_path / "wf", tiny_config(models=("mlp_a",), n_rows=2), n_rows=2)
    shipped = yaml.safe_load((wd / "profiles/slurm/config.yaml").read_text())
    (wd / "profiles/placeholders").mkdir()
    (wd / "profiles/placeholders/config.yaml").write_text(
        yaml.safe_dump({"cores": 1, "default-resources": shipped["default-resources"]}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/placeholders",
                           "--until", "export_model"], cwd=wd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key, value in (("slurm_account", "CHANGE_ME_ACCOUNT"), ("slurm_partition", "CHANGE_ME_PARTITION")):
        assert f"saferisk: warning: resource {key}={value!r} (rules export_model) is a placeholder" in proc.stderr, \
            proc.stderr[-3000:]
