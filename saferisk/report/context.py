"""Jinja2 contexts of the reports: plain dicts of already-formatted facts (no logic in
templates beyond loops and `if`). Every value a template reads is always defined."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from saferisk import __version__
from saferisk.audit.states import input_states
from saferisk.audit.summary import AuditSummary, GroupSummary, RadiusStats
from saferisk.audit.table import OUTCOMES
from saferisk.audit.verdict import FAIL, INCONCLUSIVE, PASS, Verdict
from saferisk.report.plots import comparison_figure, property_figure
from saferisk.report.render import fmt_number, fmt_percent
from saferisk.report.witness import worst_case_views

NORM_NAMES = {"inf": "L∞", "2": "L2", "1": "L1"}
RADIUS_NAMES = {"radius_lower": "certified lower bound", "radius_estimate": "estimate (paper's r̂)",
                "radius_upper": "witness upper bound"}
MAX_FAILURE_ROWS = 15
CSS_CLASSES = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "inconclusive"}


def scale_text(scale: str) -> str:
    """The unit radii are measured in."""
    return "fractions of each feature's domain width" if scale == "domain" else "the model's input units"


def property_title(property_name: str, norm: str) -> str:
    return f"{property_name} · {NORM_NAMES.get(norm, 'L' + norm)} norm"


def verdict_dict(verdict: Verdict) -> dict:
    return {"verdict": verdict.verdict, "label": verdict.label, "basis": verdict.basis or "none",
            "reason": verdict.reason, "scope": verdict.scope, "css": CSS_CLASSES.get(verdict.verdict, "none"),
            "fraction_low": fmt_percent(verdict.fraction_low), "fraction_high": fmt_percent(verdict.fraction_high)}


def manifest_hashes(manifest: dict) -> dict[str, str]:
    """{'artifact': ..., 'source': ...} from the manifest's sha256 fields, whatever their nesting."""
    found: dict[str, str] = {}
    for key, value in sorted(manifest.items()):
        if isinstance(value, dict) and "sha256" in key.lower():
            found.update({str(k): str(v) for k, v in sorted(value.items())})
        elif isinstance(value, dict) and "sha256" in value:
            found[str(key)] = str(value["sha256"])
        elif "sha256" in key.lower() and isinstance(value, str):
            found[key.lower().replace("sha256", "").strip("_-") or "artifact"] = value
    return found


def _missing_lower_reasons(rows: pd.DataFrame) -> str:
    """Why searched inputs have no certified lower bound, grouped and counted ("reason: n; ...")."""
    reasons = Counter(str(m) for m in rows.loc[rows["radius_lower"].isna() & (rows["status"] == "ok"),
                                               "radius_lower_method"] if m)
    return "; ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))


def _stats_row(kind: str, stats: RadiusStats, group: GroupSummary, rows: pd.DataFrame) -> dict:
    values = {"mean": fmt_number(stats.mean), "median": fmt_number(stats.median), "min": fmt_number(stats.min)}
    note = ""
    if stats.n_values == 0:
        if group.n_inputs == 0:
            note = "not available: " + (group.availability_note() or "no inputs")
        elif group.n_failed == group.n_inputs:
            note = f"not available: {group.availability_note()}"
        elif kind == "radius_upper":
            note = "no witness found within the maximum radius for any input"
        elif kind == "radius_lower":
            note = f"not available: no input certified ({_missing_lower_reasons(rows) or 'no certification ran'})"
        else:
            note = "not available: no estimate computed"
    elif stats.n_null:
        noun = "input" if stats.n_null == 1 else "inputs"
        what = f"{noun} without a witness" if kind == "radius_upper" else f"{noun} without a value"
        note = f"over {stats.n_values} of {group.n_inputs} inputs; {stats.n_null} {what}"
        if group.n_failed and kind != "radius_upper":
            note += f" ({group.n_failed} failed)"
        why = _missing_lower_reasons(rows) if kind == "radius_lower" else ""
        if why:
            note += f" (why: {why})"
    return {"name": RADIUS_NAMES[kind], "kind": kind, "available": stats.n_values > 0, "note": note, **values}


def group_section(group: GroupSummary, inputs: pd.DataFrame, summary: AuditSummary, manifest: dict,
                  witnesses_root) -> dict:
    """One property section of the model report: `inputs` are the group's rows of the table."""
    verdicts = [verdict_dict(v) for v in summary.criterion_verdicts
                if v.model == group.model and v.criterion is not None
                and v.criterion.property == group.property and v.criterion.norm == group.norm]
    failed = inputs.loc[~inputs["status"].isin(["ok", "violated_at_input"])]
    criteria_radii = {v.criterion.radius for v in summary.criterion_verdicts if v.criterion is not None
                      and v.criterion.property == group.property and v.criterion.norm == group.norm}
    curve = [{"radius": fmt_number(r), "criterion": r in criteria_radii,
              "certified": fmt_percent(c), "estimate": fmt_percent(e), "risk": fmt_percent(k),
              "unknown": fmt_percent(1 - c - k) if c == c else "—"}
             for r, c, e, k in zip(group.radii, group.certified_fraction, group.estimate_fraction, group.risk_fraction)]
    return {
        "key": group.key, "anchor": f"prop-{group.key}", "title": property_title(group.property, group.norm),
        "property": group.property, "norm": NORM_NAMES.get(group.norm, group.norm),
        "scale": scale_text(group.scale),
        "estimate_capped": _estimate_capped(group),
        "max_radius": fmt_number(group.max_radius), "input_sets": ", ".join(group.input_sets) or "—",
        "n_inputs": group.n_inputs, "n_ok": group.n_ok, "n_violated_at_input": group.n_violated_at_input,
        "n_failed": group.n_failed, "n_risks_found": group.n_risks_found,
        "n_estimate_exceeds_upper": group.n_estimate_exceeds_upper,
        "n_estimate_below_lower": int((inputs["radius_estimate"] < inputs["radius_lower"] * (1 - 1e-9)).sum()),
        "note": group.availability_note() or "",
        "stats": [_stats_row(k, getattr(group, k), group, inputs) for k in RADIUS_NAMES],
        "curve": curve, "verdicts": verdicts,
        "certify_methods": ", ".join(f"{m} ({c})" for m, c in group.certify_methods.items()) or "none",
        "n_budget_exhausted": int(sum(_extra(e).get("certify_budget_exhausted", False) for e in inputs["extra"])),
        "n_clock_capped": int(sum(_extra(e).get("certify_clock_capped", False) for e in inputs["extra"])),
        "outcomes": _outcome_counts(inputs),
        "figure": property_figure(inputs, group) or "",
        "worst_cases": [vars(v) for v in worst_case_views(inputs, manifest, witnesses_root)],
        "violated_at_input": [f"{r.input_set}/{r.input_id}" for r in
                              inputs.loc[inputs["status"] == "violated_at_input"].head(MAX_FAILURE_ROWS).itertuples()],
        "failures": [{"input_set": r.input_set, "input_id": r.input_id, "outcome": r.outcome, "status": r.status}
                     for r in failed.head(MAX_FAILURE_ROWS).itertuples()],
        "more_failures": max(0, len(failed) - MAX_FAILURE_ROWS),
        "evaluations": f"{int(inputs['evaluations'].sum()):,}",
        "certify_work": f"{_certify_work(inputs):,}",
    }


def _extra(text) -> dict:
    """A row's `extra` JSON as a dict ({} when empty or unreadable)."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


MAX_VALUE_CHARS = 240


def _flatten(prefix: str, value, out: list) -> None:
    """Nested dicts as dotted keys; long lists shortened (e.g. per-feature domain bounds)."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    elif isinstance(value, (list, tuple)):
        text = ", ".join(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v) for v in value)
        if len(text) > MAX_VALUE_CHARS:
            text = text[:MAX_VALUE_CHARS].rsplit(", ", 1)[0] + f", … ({len(value)} values)"
        out.append((prefix, text or "—"))
    elif isinstance(value, float):
        out.append((prefix, fmt_number(value)))
    else:
        out.append((prefix, "—" if value is None else str(value)))


def provenance_rows(provenance: dict, table: pd.DataFrame) -> list[dict]:
    """Provenance as sorted (key, value) rows, plus facts read from the table itself."""
    rows: list = []
    _flatten("", {k: v for k, v in provenance.items() if k != "audit_date"}, rows)

    def distinct(column):
        return ", ".join(sorted({str(v) for v in table[column] if str(v) != ""})) or "—"

    rows += [("table: saferisk versions", distinct("saferisk_version")), ("table: devices", distinct("device")),
             ("table: forward evaluators", distinct("evaluator")),
             ("table: seeds", distinct("seed")), ("table: search modes", distinct("search_mode")),
             ("table: search forward evaluations (sum)", f"{int(table['evaluations'].sum()):,}"),
             ("table: certification bound passes (sum)",
              f"{_certify_work(table):,}"),
             ("table: forward evaluations (sum)", f"{int(table['evaluations'].sum()):,}")]
    return [{"key": k, "value": v} for k, v in rows]


def manifest_rows(manifest: dict) -> list[dict]:
    """The model manifest as sorted (key, value) rows, hashes included."""
    rows: list = []
    _flatten("", {k: v for k, v in manifest.items() if k != "name"}, rows)
    return [{"key": k, "value": v} for k, v in rows]


def common_context(provenance: dict, audit_date, title: str) -> dict:
    return {"title": title, "audit_date": audit_date.date().isoformat(),
            "audit_title": str(provenance.get("title") or ""), "organisation": str(provenance.get("organisation") or ""),
            "audit_datetime": audit_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "generator": f"saferisk {__version__}", "PASS": PASS, "FAIL": FAIL, "INCONCLUSIVE": INCONCLUSIVE}


def basis_statement(verdicts: list[Verdict]) -> dict:
    certified = list(dict.fromkeys(v.scope for v in verdicts if v.basis == "certified"))
    estimate = list(dict.fromkeys(v.scope for v in verdicts if v.basis == "estimate"))
    return {"certified": certified, "estimate": estimate}


def model_context(table: pd.DataFrame, summary: AuditSummary, manifest: dict, provenance: dict, audit_date,
                  witnesses_root, attachment_name: str) -> dict:
    model = str(manifest.get("name") or "")
    summary = summary.for_model(model)
    rows = table.loc[table["model"] == model]
    hashes = manifest_hashes(manifest)
    table_hashes = sorted({h for h in rows["model_sha256"] if h})
    mismatched = [h for h in table_hashes if h not in hashes.values()]
    overall = next((v for v in summary.model_verdicts if v.model == model), None)
    if overall is None:
        overall = Verdict(model, "overall", INCONCLUSIVE, None, "no results for this model in the audit table")
    groups = sorted(summary.groups, key=lambda g: (g.property, g.norm))
    sections = [group_section(g, rows.loc[(rows["property"] == g.property) & (rows["norm"] == g.norm)],
                              summary, manifest, witnesses_root) for g in groups]
    failed_model = len(rows) > 0 and not rows["status"].isin(["ok", "violated_at_input"]).any()
    context = common_context(provenance, audit_date, f"Safety risk audit: {model}")
    context.update({
        "model": {"name": model, "hashes": [{"name": k, "value": v} for k, v in hashes.items()],
                  "sha256": hashes.get("artifact") or next(iter(hashes.values()), None) or
                  (table_hashes[0] if table_hashes else "not recorded"),
                  "input_shape": "×".join(str(s) for s in manifest.get("input_shape") or []) or "—",
                  "output_kind": str(manifest.get("output_kind") or "—"),
                  "decision": _decision_text(manifest),
                  "accuracy": _accuracy_text(manifest),
                  "classes": ", ".join(map(str, manifest.get("class_names") or [])) or "—",
                  "domain": _domain_text(manifest.get("domain"))},
        "hash_mismatch": mismatched,
        "overall": verdict_dict(overall),
        "failed_model": failed_model,
        "n_rows": int(len(rows)),
        "input_sets": ", ".join(sorted(set(rows["input_set"]))) or "—",
        "property_verdicts": [verdict_dict(v) for v in summary.property_verdicts],
        "criterion_verdicts": [verdict_dict(v) for v in summary.criterion_verdicts],
        "basis": basis_statement(summary.criterion_verdicts),
        "sections": sections,
        "overview": [{"title": s["title"], "anchor": s["anchor"], "n_inputs": s["n_inputs"], "n_failed": s["n_failed"],
                      "n_risks_found": s["n_risks_found"], "note": s["note"],
                      "min_upper": _min_upper_text(s["stats"][2]["min"], s["n_violated_at_input"]),
                      "median_lower": s["stats"][0]["median"],
                      "median_estimate": _capped_text(s["stats"][1]["median"], s["estimate_capped"])}
                     for s in sections],
        "provenance": provenance_rows(provenance, rows),
        "manifest_rows": manifest_rows(manifest),
        "attachment_name": attachment_name,
    })
    return context


def _outcome_counts(inputs: pd.DataFrame) -> str:
    """'3 violated, 1 certified_safe, 20 undecided' from the table's `outcome` column (zeros left out)."""
    words = list(inputs["outcome"])
    return ", ".join(f"{words.count(w)} {w}" for w in OUTCOMES if words.count(w)) or "none"


def _certify_work(rows: pd.DataFrame) -> int:
    """Bound passes the certification of these rows spent (extra.certify_work)."""
    return sum(int(_extra(e).get("certify_work", 0)) for e in rows["extra"])


def _min_upper_text(text: str, n_violated_at_input: int) -> str:
    """The smallest witness radius; 0 comes from inputs that violate the property themselves."""
    return f"{text} (violated at an input)" if n_violated_at_input and text == "0" else text


def _estimate_capped(group: GroupSummary) -> bool:
    """Whether the median estimate is the maximum radius searched (r_hat = min(d, ...) = d)."""
    median, top = group.radius_estimate.median, group.max_radius
    return median is not None and top is not None and median == median and median >= top


def _capped_text(text: str, capped: bool) -> str:
    """A radius equal to the maximum radius searched is only known to be at least that."""
    return f"≥ {text} (max radius)" if capped else text


def _decision_text(manifest: dict) -> str:
    """How the model decides; a regression model decides nothing (its 'argmax' default is moot)."""
    if str(manifest.get("output_kind") or "") == "regression":
        return "none (outputs are values)"
    return str(manifest.get("decision") or "—")


def _accuracy_text(manifest: dict) -> str:
    accuracy = manifest.get("accuracy", (manifest.get("check") or {}).get("accuracy"))
    return fmt_percent(accuracy) if isinstance(accuracy, (int, float)) else "—"


def _domain_text(domain) -> str:
    if domain is None:
        return "—"
    if isinstance(domain, dict):
        lo, hi = domain.get("lo", domain.get("lower")), domain.get("hi", domain.get("upper"))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return f"[{lo:g}, {hi:g}] per feature"
        if isinstance(lo, list) and isinstance(hi, list) and lo and hi:
            return f"per-feature box, {len(lo)} features, [{min(lo):g} … {max(hi):g}]"
        return ", ".join(f"{k}: {v}" for k, v in sorted(domain.items()) if not isinstance(v, (list, dict)))
    return str(domain)


def summary_context(table: pd.DataFrame, summary: AuditSummary, manifests: dict[str, dict], provenance: dict,
                    audit_date, attachment_name: str) -> dict:
    models = sorted(set(summary.models) | set(manifests))
    keys = sorted({g.key for g in summary.groups} | {v.scope for v in summary.property_verdicts})
    by_model_key = {(v.model, v.scope): v for v in summary.property_verdicts}
    matrix = []
    for model in models:
        overall = next((v for v in summary.model_verdicts if v.model == model),
                       Verdict(model, "overall", INCONCLUSIVE, None, "no results for this model"))
        cells = []
        for key in keys:
            verdict = by_model_key.get((model, key))
            cells.append(verdict_dict(verdict) if verdict else {"verdict": "—", "label": "not measured", "css": "none",
                                                                "reason": "", "basis": "none"})
        hashes = manifest_hashes(manifests.get(model, {}))
        matrix.append({"model": model, "overall": verdict_dict(overall), "cells": cells,
                       "sha256": hashes.get("artifact") or next(iter(hashes.values()), "not recorded")})
    properties = []
    for key in sorted({g.key for g in summary.groups}):
        groups = sorted((g for g in summary.groups if g.key == key), key=lambda g: g.model)
        first = groups[0]
        criteria = [c for c in summary.criteria if c.property == first.property and c.norm in (None, first.norm)]
        # the criterion's radius, else the smallest radius of the grid (max_radius / 10)
        at_radius = criteria[0].radius if criteria else (first.radii[0] if first.radii else None)
        rows = []
        for g in groups:
            group_rows = table.loc[(table["model"] == g.model) & (table["property"] == g.property)
                                   & (table["norm"] == g.norm)]
            n = len(group_rows)
            states = input_states(group_rows, at_radius) if n and at_radius is not None else None
            rows.append({"model": g.model, "n_inputs": g.n_inputs, "n_failed": g.n_failed,
                         "certified": fmt_percent(states["proven_safe"].sum() / n) if states else "—",
                         "estimate": fmt_percent(states["estimate_safe"].sum() / n) if states else "—",
                         "risks": g.n_risks_found,
                         "min_upper": _min_upper_text(fmt_number(g.radius_upper.min), g.n_violated_at_input),
                         "median_lower": fmt_number(g.radius_lower.median),
                         "median_estimate": _capped_text(fmt_number(g.radius_estimate.median), _estimate_capped(g)),
                         "note": g.availability_note() or ""})
        properties.append({"key": key, "anchor": f"prop-{key}", "title": property_title(first.property, first.norm),
                           "at_radius": fmt_number(at_radius), "rows": rows, "figure": comparison_figure(groups) or "",
                           "at_radius_why": "the radius of the criterion" if criteria else
                           "the smallest radius of the grid (max radius / 10): no criterion names this property",
                           "scale": scale_text(first.scale)})
    context = common_context(provenance, audit_date, "Safety risk audit: summary")
    context.update({"models": models, "keys": keys, "matrix": matrix, "properties": properties,
                    "criteria": [c.label for c in summary.criteria],
                    "basis": basis_statement(summary.criterion_verdicts),
                    "provenance": provenance_rows(provenance, table), "n_rows": int(len(table)),
                    "attachment_name": attachment_name})
    return context
