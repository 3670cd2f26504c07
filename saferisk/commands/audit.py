"""`saferisk audit MODEL --inputs DATA [--name N]`: a first audit of one model in one command.

Writes a config for the model as `saferisk init` does (the same options and defaults), checks
it as `saferisk validate-config` does, and runs the audit workflow (Snakemake) in its own
working directory beside the default audit:

  audits/<name>/config/config.yaml   the config: edit it, then rerun with the command printed last
  audits/<name>/results/reports/     <name>.pdf, summary.pdf (and their .html pages)
  audits/<name>/results/tables/      audit.csv, summary.json, ...
  audits/<name>/logs/                job logs; snakemake.log holds Snakemake's own output

The default audit (config/config.yaml -> results/) is neither read nor written. <name> is
--name, else the model file's name; without --name, a folder holding a different audit is
left alone and the next free audits/<name>-2/, -3/, ... is used, while the same command again
reuses its folder (Snakemake reruns only what changed). The config's relative paths start from
audits/<name>/. Run it in the saferisk checkout (the workflow's Snakefile is found there or
beside the installed package).

Prints one line per finished radius job (and, on a terminal, a progress bar over the inputs),
then the verdict table and the paths of the reports.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from saferisk import layout
from saferisk.commands.init import (
    add_config_arguments, build_config_text, config_name, find_snakefile, workflow_command,
)
from saferisk.config.plan import DEFAULT_CONFIG
from saferisk.io import atomic_write_bytes

SNAKEMAKE_LOG = "logs/snakemake.log"  # in the audit's working directory
POLL_SECONDS = 0.5
FAILED_TAIL_LINES = 30
_INPUT_DONE = re.compile(rb"\[(\d+)/(\d+)\] input ")
_RULE = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="audit one model in one command (config, checks, workflow, "
                                   "verdicts) in audits/<name>/", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--cores", type=int, help="CPU cores Snakemake may use (default: the profile's, all)")
    parser.set_defaults(func=run)


def choose_workdir(name: str, config_text: str, explicit: bool) -> Path:
    """audits/<name> for an explicit --name; else the first of audits/<name>, <name>-2, ...
    that holds no config yet or this very config (all one level under audits/, so the config's
    relative paths are the same in each)."""
    if explicit:
        return Path(layout.scratch_audit(name))
    for k in itertools.count(1):
        workdir = Path(layout.scratch_audit(name if k == 1 else f"{name}-{k}"))
        config = workdir / DEFAULT_CONFIG
        if not config.exists() or config.read_text() == config_text:
            return workdir
    raise AssertionError("unreachable")


@dataclass
class RadiusJobProgress:
    """What the terminal shows of one radius job: inputs done (from its log), finished (its table
    written during this run)."""

    label: str
    n_inputs: int
    log: Path
    table: Path
    log_offset: int
    done: int
    finished: bool = False

    def read_log(self) -> None:
        """Inputs done from the `[i/n] input` lines the job logged since the run started."""
        try:
            size = self.log.stat().st_size
        except FileNotFoundError:
            return
        if size < self.log_offset:  # the log was replaced
            self.log_offset = 0
        with open(self.log, "rb") as handle:
            handle.seek(self.log_offset)
            text = handle.read(size - self.log_offset)
        text = text[:text.rfind(b"\n") + 1]  # whole lines only
        self.log_offset += len(text)
        counts = [int(m.group(1)) for m in _INPUT_DONE.finditer(text)]
        if counts:
            self.done = counts[-1]

    def written_since(self, started: float) -> bool:
        try:
            return self.table.stat().st_mtime >= started
        except FileNotFoundError:
            return False


def radius_progress(plan, workdir: Path) -> list[RadiusJobProgress]:
    """One RadiusJobProgress per radius job of the plan; a job whose table exists counts as done
    until its log shows it running again."""
    from saferisk.audit.verdict import norm_name

    jobs = []
    for job in plan.radius_jobs():
        start, stop = plan.input_sets[job.inputs].shard_rows(job.shard)
        log = workdir / layout.radius_log(job.model, job.inputs, job.property, job.norm, job.shard)
        table = workdir / job.output
        jobs.append(RadiusJobProgress(
            f"{job.model} {job.property} {norm_name(job.norm)} ({job.inputs}, shard {job.shard})", stop - start,
            log, table, log.stat().st_size if log.exists() else 0, stop - start if table.exists() else 0))
    return jobs


def finished_line(job: RadiusJobProgress, index: int, total: int) -> str:
    """`[2/4] m robustness L∞ (inputs, shard 0): 32 inputs, 30 certified lower bounds, 12 witnesses, 0 failed`."""
    import pandas as pd

    from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT

    table = pd.read_parquet(job.table, columns=["status", "radius_lower", "radius_upper", "seconds"])
    violated = table["status"] == STATUS_VIOLATED_AT_INPUT
    failed = ~(violated | (table["status"] == STATUS_OK))
    return (f"[{index}/{total}] {job.label}: {len(table)} inputs, {int(table['radius_lower'].notna().sum())} "
            f"certified lower bounds, {int((table['radius_upper'].notna() | violated).sum())} witnesses, "
            f"{int(failed.sum())} failed ({float(table['seconds'].sum()):.1f} s searching)")


class ProgressPrinter:
    """Polls the radius jobs while Snakemake runs: a bar over the inputs on a terminal (tqdm)
    and one line per finished radius job."""

    def __init__(self, jobs: list[RadiusJobProgress], started: float):
        from tqdm import tqdm

        self.jobs, self.started, self.stage = jobs, started, ""
        self.n_finished = 0
        self.bar = tqdm(total=sum(j.n_inputs for j in jobs), unit="input", desc="radius brackets", disable=None,
                        file=sys.stderr, dynamic_ncols=True)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        for job in self.jobs:
            job.read_log()
            if not job.finished and job.written_since(self.started):
                job.finished, job.done = True, job.n_inputs
                self.n_finished += 1
                self.bar.write(finished_line(job, self.n_finished, len(self.jobs)), file=sys.stdout)
        self.bar.n = sum(j.done for j in self.jobs)
        self.bar.set_postfix_str(self.stage, refresh=False)
        self.bar.refresh()

    def __enter__(self) -> "ProgressPrinter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.poll()
        self.bar.close()


def run_workflow(snakefile: Path, workdir: Path, cores: int | None, plan, env: dict[str, str]) -> int:
    """Snakemake in `workdir` (its output into logs/snakemake.log), with progress; its exit code."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir)]
    if cores:
        command += ["--cores", str(cores)]
    log_path = workdir / SNAKEMAKE_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    jobs = radius_progress(plan, workdir)
    up_to_date = sum(j.done == j.n_inputs for j in jobs)
    print(f"running the workflow: {len(jobs)} radius jobs ({up_to_date} up to date); Snakemake's output: {log_path}",
          flush=True)
    started = time.time() - 1  # file times may be rounded down to the second
    with open(log_path, "w", encoding="utf-8") as log, ProgressPrinter(jobs, started) as progress:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   env=env)
        try:
            for line in process.stdout:
                log.write(line)
                match = _RULE.match(line)
                if match:
                    progress.stage = match.group(1)
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()  # Snakemake stops its jobs and removes their partial outputs
            process.wait()
            raise


def failure_text(workdir: Path, returncode: int) -> str:
    log_path = workdir / SNAKEMAKE_LOG
    tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-FAILED_TAIL_LINES:]
    return "\n".join([*tail, f"saferisk audit: the workflow failed (exit {returncode}); "
                             f"Snakemake's output: {log_path}"])


def run(args: argparse.Namespace) -> int:
    from saferisk.audit.terminal import audit_result_text
    from saferisk.cli import build_parser
    from saferisk.config import load_plan

    snakefile = find_snakefile()
    name = config_name(args)
    text, _ = build_config_text(args, workdir=Path(layout.scratch_audit(name)))
    workdir = choose_workdir(name, text, explicit=args.name is not None)
    config = workdir / DEFAULT_CONFIG
    if config.exists() and config.read_text() == text:
        print(f"audit {workdir}: the same config as before, rerunning what is not up to date")
    else:
        print(f"{'updated' if config.exists() else 'wrote'} {config}")
        atomic_write_bytes(config, text.encode())
    check = build_parser().parse_args(["validate-config", str(config), "--workdir", str(workdir)])
    check.func(check)  # `saferisk validate-config`, every option at its default
    plan = load_plan(config, base=workdir)
    env = dict(os.environ)
    if args.factory:  # its module is imported from here, not from the audit's folder the jobs run in
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    returncode = run_workflow(snakefile, workdir, args.cores, plan, env)
    if returncode:
        print(failure_text(workdir, returncode), file=sys.stderr)
        return 1
    print(audit_result_text(workdir, list(plan.models)))
    print(f"config: {config} (every key: config/README.md); after editing it, rerun the audit with:")
    print(f"next: {workflow_command(f'--directory {workdir}', args.factory)}")
    return 0
