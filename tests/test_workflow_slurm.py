"""Opt-in (SAFERISK_TEST_SLURM=1, root, Debian packages slurm-wlm + munge): a real single-node
SLURM cluster runs a tiny audit's DAG through sbatch with a copy of profiles/slurm.

The test starts munged, slurmctld and slurmd itself and stops them by the PIDs it started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pandas as pd
import pytest
import yaml

from test_workflow_support import setup_workdir, snakemake, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture()
def slurm_cluster(tmp_path):
    if os.environ.get("SAFERISK_TEST_SLURM") != "1":
        pytest.skip("set SAFERISK_TEST_SLURM=1 to start a real single-node SLURM cluster")
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo") if not shutil.which(b)]
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
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
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


def test_tiny_audit_through_sbatch(tmp_path, slurm_cluster):
    config = tiny_config(models=("mlp_a",), n_rows=2, shard_size=1)
    wd = setup_workdir(tmp_path / "wf", config, n_rows=2)
    profile = yaml.safe_load((wd / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(slurm_account="root", slurm_partition="debug")
    radius = profile["set-resources"]["compute_radius_shard"]
    radius.update(slurm_partition="debug", gpu=0)  # the test node has no GPU
    radius.pop("gpu_model", None)
    radius.pop("cpus_per_gpu", None)
    profile["latency-wait"] = 10
    (wd / "profiles/test-slurm").mkdir()
    (wd / "profiles/test-slurm/config.yaml").write_text(yaml.safe_dump(profile))
    snakemake(wd, "--profile", "profiles/test-slurm", "results/tables/audit.csv", env=slurm_cluster, timeout=600)
    table = pd.read_parquet(wd / "results/tables/audit.parquet")
    assert len(table) == 2 * 2
    assert list((wd / ".snakemake" / "slurm_logs").rglob("*.log")), "no job went through sbatch"
