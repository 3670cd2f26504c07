"""Assemble benchmarks/results/*.json into the README's short "Performance" section."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS_DIR, machine_markdown

ORDER = ("paper", "compare", "throughput", "gpu")


def performance_markdown(results_dir: Path = RESULTS_DIR) -> str:
    """The headline claims and goal verdicts of every benchmark that has a result file."""
    results = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "headlines" in data:
            results[data.get("name", path.stem)] = data
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    lines = ["## Performance", ""]
    if not names:
        return "\n".join(lines + ["No benchmark results yet: run `python -m benchmarks`.", ""])
    machine = results[names[0]].get("machine")
    if machine:
        lines += [machine_markdown(machine), ""]
    for name in names:
        data = results[name]
        for headline in data.get("headlines", []):
            lines.append(f"- {headline}")
    verdicts = [g for n in names for g in results[n].get("goals", [])]
    if verdicts:
        lines += ["", "Goals the benchmarks check:", ""]
        for g in verdicts:
            verdict = {True: "met", False: "not met", None: "not measured"}[g["met"]]
            lines.append(f"- {g['text']}: **{verdict}** ({g['measured']})")
    lines += ["", "Reproduce: `python -m benchmarks` (full tables in `benchmarks/results/`).", ""]
    return "\n".join(lines)


def write_performance(results_dir: Path = RESULTS_DIR) -> Path:
    from saferisk.io import atomic_write_bytes

    path = Path(results_dir) / "README_performance.md"
    atomic_write_bytes(path, performance_markdown(results_dir).encode())
    return path
