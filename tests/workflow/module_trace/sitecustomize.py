"""Loaded by every Python a traced Snakemake run starts (PYTHONPATH, test_workflow's done_run):
at exit, a job script's process writes the saferisk modules it loaded, and whether it loaded
torch, to $SAFERISK_MODULE_TRACE/<rule>-<pid>.json (other processes write nothing)."""

import atexit
import importlib.util
import json
import os
import sys


def _write_trace() -> None:
    job = getattr(sys.modules.get("__main__"), "snakemake", None)  # a script job's `snakemake` object
    rule = getattr(job, "rule", None)
    folder = os.environ.get("SAFERISK_MODULE_TRACE")
    if not folder or not isinstance(rule, str):
        return
    modules = sorted(name for name in sys.modules if name == "saferisk" or name.startswith("saferisk."))
    with open(os.path.join(folder, f"{rule}-{os.getpid()}.json"), "w") as out:
        json.dump({"modules": modules, "torch": "torch" in sys.modules}, out)


atexit.register(_write_trace)


def _chain() -> None:
    """Run the sitecustomize this one shadows (a system Python's, coverage's), if any, once."""
    if os.environ.get("_SAFERISK_TRACE_CHAINED"):
        return
    os.environ["_SAFERISK_TRACE_CHAINED"] = "1"
    try:
        here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
        for entry in sys.path:
            folder = os.path.realpath(entry or os.getcwd())
            candidate = os.path.join(folder, "sitecustomize.py")
            if folder != here and os.path.isfile(candidate):
                spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return
    finally:
        del os.environ["_SAFERISK_TRACE_CHAINED"]


_chain()
