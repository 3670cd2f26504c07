"""How a workflow script runs a step: its log file, its threads, readable errors."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("saferisk.steps")


def run_step(log_path: str | None, step, /, *, threads: int | None = None, **kwargs):
    """Run one workflow step with its stderr and logging sent to `log_path` (the rule's log).

    A SaferiskError becomes one readable `error: ...` line in the log (and a nonzero exit);
    other exceptions keep their traceback there.
    """
    from saferisk.errors import SaferiskError

    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_path, "a", buffering=1, encoding="utf-8")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    try:
        result = step(**kwargs)
    except SaferiskError as exc:
        log.error("error: %s", exc)
        raise SystemExit(f"saferisk: error: {exc} (log: {log_path})") from None
    log.info("step %s finished in %.1fs", step.__name__, time.perf_counter() - start)
    return result


def log_device(device) -> None:
    """One log line naming the accelerator (Snakemake's benchmark files have no GPU figures)."""
    import os

    import torch

    device = str(device)
    if device.startswith("cuda"):
        log.info("device %s: %s, %d visible, CUDA_VISIBLE_DEVICES=%s", device, torch.cuda.get_device_name(torch.device(device)),
                 torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    else:
        log.info("device cpu (%s threads)", torch.get_num_threads())
