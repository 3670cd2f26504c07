"""The provenance chapter of the reports, readable by an assessor: labelled facts (never
dotted keys), the resolved config and the model manifest as YAML, the attached files with
their SHA-256, whether a verdict depends on the machine's speed, and the document ID.

Paths are shown relative to the working directory (the audit project): an absolute path in
a config or manifest is rewritten for display (outside the project: '…/<file name>'), so no
report names the machine's folders and the text is the same wherever the audit runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from saferisk.audit.summary import AuditSummary
from saferisk.audit.table import extra_dict

#: labels of the provenance keys the workflow and `saferisk report` record
LABELS = {
    "config_sha256": "audit config SHA-256",
    "model_config_sha256": "this model's config subset SHA-256",
    "algorithm_hash": "algorithm hash (radius engine source)",
    "git": "git commit",
    "git_commit": "git commit",
    "versions": "software versions",
    "model_source": "model source",
    "title": "audit title",
    "organisation": "organisation",
    "device": "device",
    "seeds": "seeds",
    "run_times": "run times",
}
#: the order of the config's sections in the appendix (any other key follows, sorted)
CONFIG_SECTIONS = ("models", "model", "input_sets", "properties", "criteria", "sharding", "seeds", "report", "device")


def relative_path_text(text: str, base: Path | None = None) -> str:
    """An absolute path as a path relative to `base` (default: the working directory) when it
    lies inside it, else '…/<file name>' (its SHA-256 elsewhere in the report identifies it):
    the text does not depend on where the machine keeps the audit."""
    if not (isinstance(text, str) and os.path.isabs(text)):
        return text
    base = Path(base or Path.cwd()).absolute()
    path = Path(os.path.normpath(text))
    if path.is_relative_to(base):
        return path.relative_to(base).as_posix() or "."
    return f"…/{path.name}"


def relative_paths(value: Any) -> Any:
    """`value` with every absolute path string made relative (relative_path_text)."""
    if isinstance(value, dict):
        return {k: relative_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_paths(v) for v in value]
    return relative_path_text(value) if isinstance(value, str) else value


class _Dumper(yaml.SafeDumper):
    """YAML for people: lists of scalars on one line, a value shared by two keys written out
    twice (no &anchor / *alias: the text depends on the values only, never on object identity)."""

    def ignore_aliases(self, data) -> bool:
        return True


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (dict, list, tuple)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def yaml_text(value: Any) -> str:
    """`value` as YAML (keys sorted, paths relative): the same value gives the same text."""
    text = yaml.dump(relative_paths(value), Dumper=_Dumper, sort_keys=True, allow_unicode=True, width=96,
                     default_flow_style=False)
    return text.removesuffix("...\n").rstrip("\n")


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def _git_text(value: Any) -> str:
    """'<commit> · working tree clean' / '· tracked files changed since this commit' / 'not a git checkout'."""
    if not isinstance(value, dict):
        return str(value)
    commit = str(value.get("commit") or "not a git checkout")
    dirty = value.get("dirty")
    if dirty is True:
        return f"{commit} · tracked files changed since this commit (dirty)"
    if dirty is False:
        return f"{commit} · working tree clean"
    return commit if dirty is None else f"{commit} · changes: {dirty}"


def _inline(value: Any) -> str:
    """A small nested value on one line ('a 1 · b 2'), else YAML."""
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        return " · ".join(f"{k} {v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) or "—"
    return yaml_text(value)


def _row(key: str, value: Any, mono: bool = False) -> dict:
    text = value if isinstance(value, str) else _inline(value)
    return {"key": key, "value": relative_path_text(text), "block": "\n" in text, "mono": mono}


def provenance_rows(provenance: dict, table: pd.DataFrame) -> list[dict]:
    """The provenance as labelled rows (hashes first), then facts read from the table itself.
    Each row: key (label), value (text), block (a YAML block), mono (a digest)."""
    rows = []
    for key in ("config_sha256", "model_config_sha256", "algorithm_hash", "git", "git_commit"):
        value = provenance.get(key)
        if value is None:
            continue
        if key == "model_config_sha256" and isinstance(value, dict):  # the summary: one per model
            rows += [_row(f"config subset SHA-256 of {m}", str(h), mono=True) for m, h in sorted(value.items())]
        else:
            rows.append(_row(_label(key), _git_text(value) if key == "git" else str(value), mono=True))
    for name, info in sorted((provenance.get("input_sets") or {}).items()):
        info = info if isinstance(info, dict) else {"sha256": info}
        size = f"{info.get('rows')} rows × {info.get('features')} features, " if info.get("rows") is not None else ""
        rows.append(_row(f"input set {name}", f"{size}SHA-256 {info.get('sha256')}", mono=True))
    shown = {"audit_date", "config_sha256", "model_config_sha256", "algorithm_hash", "git", "git_commit", "input_sets",
             "title", "organisation"}
    for key in sorted(k for k in provenance if k not in shown):
        if provenance[key] not in (None, "", {}, []):
            rows.append(_row(_label(key), provenance[key]))

    def distinct(column):
        return ", ".join(sorted({str(v) for v in table[column] if str(v) != ""})) or "—"

    evaluations = int(table["evaluations"].sum()) if len(table) else 0
    rows += [_row("saferisk versions in the results", distinct("saferisk_version")),
             _row("devices in the results", distinct("device")),
             _row("forward evaluators in the results", distinct("evaluator")), _row("seeds in the results", distinct("seed")),
             _row("search modes in the results", distinct("search_mode")),
             _row("search forward evaluations in the results (sum)", f"{evaluations:,}"),
             _row("certification bound passes in the results (sum)",
                  f"{sum(extra_dict(e).get('certify_work', 0) for e in table['extra']):,}")]
    return rows


#: readable labels of the export manifest's keys (others: the key with spaces)
MANIFEST_LABELS = {
    "certify_memory": "certification memory plan (internal: sizes of the bound computation, used to fit it "
                      "into memory; no result depends on it)",
    "check": "export check",
    "versions": "software versions at export",
    "artifact_sha256": "artifact SHA-256",
    "artifact_opset": "ONNX opset",
}


def export_check_text(check: dict) -> str:
    """The manifest's export check in words: the exported ONNX against the source model."""
    inputs = str(check.get("inputs") or "")
    parts = inputs.split(":")
    if len(parts) == 3 and parts[0] == "random":
        on = f"{parts[1]} random inputs (seed {parts[2].removeprefix('seed')})"
    else:
        on = f"{check.get('n_rows', '?')} inputs ({inputs or 'not recorded'})"
    text = (f"the exported ONNX gives the source model's outputs on {on}: largest difference "
            f"{check.get('max_abs_diff', '—')}, allowed {check.get('tolerance', '—')}")
    if isinstance(check.get("accuracy"), (int, float)):
        text += f"; accuracy {100 * check['accuracy']:.4g}% on {check.get('n_labels') or check.get('n_rows')} labelled rows"
    return text


def manifest_rows(manifest: dict, domain_note: str = "") -> list[dict]:
    """The model manifest as labelled rows: scalars inline, nested entries as YAML blocks, the
    export check in words; domain_note: what applies when the manifest records no domain."""
    rows = []
    for key in sorted(k for k in manifest if k != "name"):
        value = manifest[key]
        label = MANIFEST_LABELS.get(key, key.replace("_", " "))
        if key == "check" and isinstance(value, dict):
            rows.append(_row(label, export_check_text(value)))
            continue
        if key == "domain" and value is None and domain_note:
            rows.append(_row(label, f"— (none set at export; {domain_note})"))
            continue
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            rows.append(_row(label, yaml_text(value) if value else "—", mono="sha256" in json.dumps(value)))
        elif isinstance(value, list):
            rows.append(_row(label, ", ".join(map(str, value)) or "—"))
        else:
            rows.append(_row(label, "—" if value is None else str(value), mono="sha256" in key))
    return rows


def config_sections(config: dict | None) -> list[dict]:
    """The resolved config, one YAML block per top-level section ({title, key, yaml})."""
    if not config:
        return []
    keys = [k for k in CONFIG_SECTIONS if k in config] + sorted(k for k in config if k not in CONFIG_SECTIONS)
    return [{"key": k, "title": k.replace("_", " ").capitalize(), "yaml": yaml_text(config[k])} for k in keys]


def speed_dependence(rows: pd.DataFrame, summary: AuditSummary, models: list[str]) -> dict:
    """Whether a verdict could change on a faster (or slower) machine: certification ended by
    the wall-clock cap (extra.certify_clock_capped) gives bounds that depend on the machine's
    speed; the work budget and the search budget end at the same point everywhere.
    {n_capped, groups: ['robustness-inf (3 inputs)'], criteria: [scope of each certified
    criterion of those groups], text}."""
    capped = rows.loc[[bool(extra_dict(e).get("certify_clock_capped", False)) for e in rows["extra"]]]
    groups = capped.groupby(["model", "property", "norm"], sort=True).size() if len(capped) else pd.Series(dtype=int)
    keys = {(str(m), str(p), str(n)) for (m, p, n) in groups.index}
    criteria = sorted({v.scope for v in summary.criterion_verdicts if v.criterion is not None and v.model in models
                       and v.basis == "certified" and any(m == v.model and p == v.criterion.property and
                                                          v.criterion.norm in (None, n) for m, p, n in keys)})
    names = [f"{m} {p}-{n} ({c} input{'s' if c != 1 else ''})" if len(models) > 1 else
             f"{p}-{n} ({c} input{'s' if c != 1 else ''})" for (m, p, n), c in groups.items()]
    if not len(capped):
        text = ("No certification was ended by the wall-clock cap (the certification's time_budget_s setting): every certified bound "
                "was ended by the work budget or closed its bracket, and the search has a fixed evaluation budget. "
                "The same inputs, config and code give the same bounds and verdicts on a faster or slower machine.")
    elif criteria:
        text = (f"The wall-clock cap (the certification's time_budget_s setting) ended the certification of {len(capped)} result"
                f"{'s' if len(capped) != 1 else ''}: {'; '.join(names)}. Their certified lower bounds depend on the "
                "machine's speed (a faster machine may certify more), so these verdicts could change on another "
                f"machine: {'; '.join(criteria)}. Raise the certification's time_budget_s (or rely on its work_budget) to remove "
                "the dependence.")
    else:
        text = (f"The wall-clock cap (the certification's time_budget_s setting) ended the certification of {len(capped)} result"
                f"{'s' if len(capped) != 1 else ''}: {'; '.join(names)}. Their certified lower bounds depend on the "
                "machine's speed, but no verdict rests on them: no verdict could change on a faster machine.")
    return {"n_capped": int(len(capped)), "groups": names, "criteria": criteria, "text": text}


def record_context(provenance: dict, document_id: str, attachments: list, config: dict | None, speed: dict,
                   witnesses_missing: tuple[str, ...] = ()) -> dict:
    """The template's `record`: document ID, config hashes and git commit for the cover, the
    resolved config's sections, the attached files, the machine-speed statement."""
    model_subset = provenance.get("model_config_sha256")
    git = provenance.get("git", provenance.get("git_commit"))
    return {"document_id": document_id,
            "config_sha256": str(provenance.get("config_sha256") or "not recorded"),
            "model_config_sha256": model_subset if isinstance(model_subset, str) else "",
            "git": _git_text(git) if git is not None else "not recorded",
            "git_dirty": isinstance(git, dict) and git.get("dirty") is True,
            "config_sections": config_sections(config),
            "attachments": [a.view() for a in attachments],
            "speed": speed,
            "witnesses_missing": len(witnesses_missing)}
