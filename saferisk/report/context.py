"""Jinja2 contexts of the reports: plain dicts of already-formatted facts (no logic in
templates beyond loops and `if`). Every value a template reads is always defined."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from saferisk import __version__
from saferisk.audit.states import input_states
from saferisk.audit.summary import AuditSummary, GroupSummary, RadiusStats
from saferisk.audit.table import OUTCOMES, extra_dict
from saferisk.audit.verdict import FAIL, INCONCLUSIVE, PASS, Verdict, norm_name, unit_text
from saferisk.report.glossary import glossary_rows
from saferisk.report.inputs import (
    InputFacts, accuracy_view, input_facts, input_table, misclassified_note, violation_causes,
)
from saferisk.report.plots import comparison_figure, property_figure
from saferisk.report.provenance import manifest_rows, provenance_rows
from saferisk.report.render import fmt_number, fmt_percent
from saferisk.report.specification import domain_rows, domain_text, property_specification
from saferisk.report.witness import worst_case_views

#: what the margin w (table column value_at_x0) measures, per property kind; the property
#: holds while w stays above the threshold c (column threshold)
MARGIN_MEANING = {
    "robustness": "the output of the decided class minus the largest other output",
    "reachability": "how far the output lies inside its allowed range (the distance to the nearer end; "
                    "negative: outside)",
    "uncertainty": "KL(uniform ‖ output distribution): how far the outputs are from near-uniform",
    "invariance": "at the reference input: the output of its own class minus that of this input's label",
    "custom": "the property's margin function of the outputs",
}
RADIUS_NAMES = {"radius_lower": "certified lower bound", "radius_estimate": "estimate (paper's r̂)",
                "radius_upper": "witness upper bound"}
MAX_FAILURE_ROWS = 15
MAX_INPUT_ROWS = 60  # per-input rows shown per property section (all rows are in the attached CSV)
CURVE_TABLE_STEPS = 10  # the curve table shows r = 0, max_radius/10, ..., max_radius and the criteria radii
CSS_CLASSES = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "inconclusive"}


def scale_text(scale: str) -> str:
    """The unit radii are measured in, as a phrase."""
    return "fractions of each feature's domain width" if scale == "domain" else "the model's input units"


def property_title(property_name: str, norm: str) -> str:
    return f"{property_name} · {norm_name(norm)} norm"


def radius_unit(norm: str, scale: str) -> str:
    """'L∞ norm, input units': what every radius of a (property, norm) is measured in."""
    return f"{norm_name(norm)} norm, {unit_text(scale)}"


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
                  witnesses_root, facts: InputFacts, audit_config: dict | None = None,
                  set_domains: dict[str, dict] | None = None, model=None) -> dict:
    """One property section of the model report: `inputs` are the group's rows of the table;
    `manifest` with the effective input domain (model_domain_manifest)."""
    model_rows = inputs  # the criteria of this section read exactly these rows
    verdicts = [dict(verdict_dict(v), note=misclassified_note(v, model_rows, facts)) for v in summary.criterion_verdicts
                if v.model == group.model and v.criterion is not None
                and v.criterion.property == group.property and v.criterion.norm == group.norm]
    failed = inputs.loc[~inputs["status"].isin(["ok", "violated_at_input"])]
    criteria_radii = {v.criterion.radius for v in summary.criterion_verdicts if v.criterion is not None
                      and v.criterion.property == group.property and v.criterion.norm == group.norm}
    unit = radius_unit(group.norm, group.scale)
    n_witness = group.n_risks_found - group.n_violated_at_input
    return {
        "key": group.key, "anchor": f"prop-{group.key}", "title": property_title(group.property, group.norm),
        "property": group.property, "norm": norm_name(group.norm), "unit": unit, "unit_short": unit_text(group.scale),
        "scale": scale_text(group.scale),
        "specification": property_specification(group.property, group.norm, audit_config, group.model, inputs,
                                                 domain_text(manifest.get("domain"), manifest.get("feature_names")) or "",
                                                 set_domains),
        "estimate_capped": _estimate_capped(group),
        "max_radius": fmt_number(group.max_radius), "input_sets": ", ".join(group.input_sets) or "—",
        "n_inputs": group.n_inputs, "n_ok": group.n_ok, "n_violated_at_input": group.n_violated_at_input,
        "n_failed": group.n_failed, "n_risks_found": group.n_risks_found,
        "risks_text": _risks_text(group, n_witness),
        "n_estimate_exceeds_upper": group.n_estimate_exceeds_upper,
        "n_estimate_below_lower": int((inputs["radius_estimate"] < inputs["radius_lower"] * (1 - 1e-9)).sum()),
        "estimate_without_witness": _estimate_without_witness(inputs, group),
        "note": group.availability_note() or "",
        "stats": [_stats_row(k, getattr(group, k), group, inputs) for k in RADIUS_NAMES],
        "curve": curve_rows(group, criteria_radii), "verdicts": verdicts,
        "curve_has_criterion": any(r in criteria_radii for r in group.radii),
        "margin_meaning": _margin_meaning(group.property, audit_config, inputs),
        "inputs": input_table(inputs, facts, MAX_INPUT_ROWS),
        "certify_methods": ", ".join(f"{m} ({c})" for m, c in group.certify_methods.items()) or "none",
        "n_budget_exhausted": int(sum(extra_dict(e).get("certify_budget_exhausted", False) for e in inputs["extra"])),
        "n_clock_capped": int(sum(extra_dict(e).get("certify_clock_capped", False) for e in inputs["extra"])),
        "outcomes": _outcome_counts(inputs),
        "figure": property_figure(inputs, group) or "",
        "worst_cases": [dict(vars(v), misclassified=facts.misclassified((v.input_set, v.input_id)))
                        for v in worst_case_views(inputs, manifest, witnesses_root, model=model)],
        "violated_at_input": violation_causes(inputs, facts, MAX_FAILURE_ROWS),
        "failures": [{"input_set": r.input_set, "input_id": r.input_id, "outcome": r.outcome, "status": r.status}
                     for r in failed.head(MAX_FAILURE_ROWS).itertuples()],
        "more_failures": max(0, len(failed) - MAX_FAILURE_ROWS),
        "evaluations": f"{int(inputs['evaluations'].sum()):,}",
        "certify_work": f"{_certify_work(inputs):,}",
    }


def _margin_meaning(property_name: str, audit_config: dict | None, inputs: pd.DataFrame) -> str:
    """What the per-input margin w means for this property, with its threshold c."""
    spec = ((audit_config or {}).get("properties") or {}).get(property_name) or {}
    kind = str(spec.get("kind") or property_name)
    what = MARGIN_MEANING.get(kind, "the property's margin")
    thresholds = sorted({float(t) for t in inputs["threshold"] if t == t}) if len(inputs) else []
    c = fmt_number(thresholds[0]) if len(thresholds) == 1 else "the row's threshold"
    return f"w = {what}; the property holds while w > {c}"


def curve_rows(group: GroupSummary, criteria_radii: set[float]) -> list[dict]:
    """Rows of the curve table: the grid radii nearest to 0, max_radius/10, ..., max_radius,
    and every criterion radius (the plot shows the whole grid)."""
    radii = list(group.radii)
    if group.max_radius and len(radii) > CURVE_TABLE_STEPS + 1 + len(criteria_radii):
        targets = [group.max_radius * k / CURVE_TABLE_STEPS for k in range(CURVE_TABLE_STEPS + 1)]
        keep = {min(range(len(radii)), key=lambda i: abs(radii[i] - t)) for t in targets}
        keep |= {i for i, r in enumerate(radii) if r in criteria_radii}
    else:
        keep = set(range(len(radii)))
    return [{"radius": fmt_number(radii[i]), "criterion": radii[i] in criteria_radii,
             "certified": fmt_percent(c), "estimate": fmt_percent(e), "risk": fmt_percent(k),
             "no_witness": fmt_percent(1 - k) if k == k else "—",
             "unknown": fmt_percent(1 - c - k) if c == c else "—"}
            for i, (c, e, k) in enumerate(zip(group.certified_fraction, group.estimate_fraction, group.risk_fraction))
            if i in keep]


def _risks_text(group: GroupSummary, n_witness: int) -> str:
    """'Risks found' in words: witnesses within the maximum radius plus violations at the input."""
    unit = radius_unit(group.norm, group.scale)
    text = (f"{group.n_risks_found} of {group.n_inputs} inputs have a risk found: {n_witness} with a witness "
            f"(a concrete changed input, re-checked, for which the property fails) within the maximum radius "
            f"{fmt_number(group.max_radius)} ({unit})")
    if group.n_violated_at_input:
        text += f", {group.n_violated_at_input} violating the property at the unchanged input itself"
    return text + (". A risk found within the maximum radius does not fail a criterion by itself: the "
                   "criteria judge the radius they name.")


ESTIMATE_WITHOUT_WITNESS_WHY = (
    "Both can be true: the estimate r̂ = margin / steepest slope found assumes the margin keeps falling at that "
    "steepest rate, which the network need not do, and a missing witness is not a proof of safety. For these "
    "inputs the true radius is at least the certified lower bound and may exceed the maximum radius; only the "
    "certified bound is a guarantee.")


def _estimates_without_witness(inputs: pd.DataFrame, group: GroupSummary) -> tuple[int, str]:
    """(count, median estimate) of the inputs whose estimate lies below max_radius although no
    witness was found up to max_radius."""
    top = group.max_radius
    if not top:
        return 0, "—"
    mask = ((inputs["status"] == "ok") & inputs["radius_upper"].isna()
            & (inputs["radius_estimate"] < top * (1 - 1e-9)))
    n = int(mask.sum())
    return n, fmt_number(float(inputs.loc[mask, "radius_estimate"].median())) if n else "—"


def _estimate_without_witness(inputs: pd.DataFrame, group: GroupSummary) -> str:
    """Why an estimate below max_radius can stand beside 'no witness up to max_radius' ('' if none)."""
    n, median = _estimates_without_witness(inputs, group)
    if not n:
        return ""
    top = fmt_number(group.max_radius)
    noun = "input has" if n == 1 else "inputs have"
    return (f"{n} {noun} an estimate below the maximum radius {top} (median {median}) although the search "
            f"found no witness up to {top}. {ESTIMATE_WITHOUT_WITNESS_WHY}")


def _estimates_without_witness_text(table: pd.DataFrame, groups: list[GroupSummary]) -> str:
    """The summary's version of `_estimate_without_witness`: the counts per model, one explanation."""
    counts = []
    for g in groups:
        rows = table.loc[(table["model"] == g.model) & (table["property"] == g.property) & (table["norm"] == g.norm)]
        n, median = _estimates_without_witness(rows, g)
        if n:
            counts.append(f"{g.model}: {n} of {g.n_inputs} (median estimate {median})")
    if not counts:
        return ""
    return ("Inputs with an estimate below the maximum radius although the search found no witness up to it: "
            f"{'; '.join(counts)}. {ESTIMATE_WITHOUT_WITNESS_WHY}")


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
                  witnesses_root, attachment_name: str, audit_config: dict | None = None, model_path=None) -> dict:
    """The model report's context; model_path: the audited artifact, run on each shown
    witness to state its outputs and decision (None: not stated)."""
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
    facts = input_facts(rows, manifest)
    set_domains = input_set_domains(provenance)
    audited_sets = sorted(set(rows["input_set"]))
    measured = model_domain_manifest(manifest, set_domains, audited_sets)
    audited_model = _load_model(model_path)
    sections = [group_section(g, rows.loc[(rows["property"] == g.property) & (rows["norm"] == g.norm)],
                              summary, measured, witnesses_root, facts, audit_config, set_domains,
                              audited_model) for g in groups]
    failed_model = len(rows) > 0 and not rows["status"].isin(["ok", "violated_at_input"]).any()
    context = common_context(provenance, audit_date, f"Safety risk audit: {model}")
    context_domain = (domain_text(measured.get("domain"), manifest.get("feature_names"))
                      or "not recorded (unbounded)")
    context.update({
        "model": {"name": model, "hashes": [{"name": k, "value": v} for k, v in hashes.items()],
                  "sha256": hashes.get("artifact") or next(iter(hashes.values()), None) or
                  (table_hashes[0] if table_hashes else "not recorded"),
                  "input_shape": "×".join(str(s) for s in manifest.get("input_shape") or []) or "—",
                  "output_kind": str(manifest.get("output_kind") or "—"),
                  "decision": _decision_text(manifest),
                  "accuracy": _accuracy_text(manifest),
                  "audited_accuracy": accuracy_view(facts),
                  "classes": ", ".join(map(str, manifest.get("class_names") or [])) or "—",
                  "domain": domain_text(manifest.get("domain"), manifest.get("feature_names")) or domain_rows(
                      audit_config or {}, model, audited_sets, "", set_domains)},
        "hash_mismatch": mismatched,
        "overall": verdict_dict(overall),
        "failed_model": failed_model,
        "n_rows": int(len(rows)),
        "input_sets": ", ".join(sorted(set(rows["input_set"]))) or "—",
        "property_verdicts": [verdict_dict(v) for v in summary.property_verdicts],
        "criterion_verdicts": [dict(verdict_dict(v), note=misclassified_note(v, rows, facts))
                               for v in summary.criterion_verdicts] + _not_applying(summary, model, audit_config),
        "basis": basis_statement(summary.criterion_verdicts),
        "sections": sections,
        "specification_supplied": audit_config is not None,
        "glossary": glossary_rows(),
        "overview": [{"title": s["title"], "anchor": s["anchor"], "n_inputs": s["n_inputs"], "n_failed": s["n_failed"],
                      "n_risks_found": s["n_risks_found"], "note": s["note"], "unit": s["unit"],
                      "min_upper": _min_upper_text(s["stats"][2]["min"], s["n_violated_at_input"]),
                      "median_lower": s["stats"][0]["median"],
                      "median_estimate": _capped_text(s["stats"][1]["median"], s["estimate_capped"])}
                     for s in sections],
        "provenance": provenance_rows(provenance, rows),
        "manifest_rows": manifest_rows(manifest, "" if manifest.get("domain") is not None else
                                       f"radii are measured in the input set's domain: {context_domain}"),
        "attachment_name": attachment_name,
    })
    return context


NOT_APPLYING = "does not apply to this model (property not audited for it)"


def _not_applying(summary: AuditSummary, model: str, audit_config: dict | None = None) -> list[dict]:
    """Rows of the criteria that read no result of `model` (its property is not audited for it),
    labelled with the unit its property's `scale` gives in the audit config."""
    from dataclasses import replace

    properties = (audit_config or {}).get("properties") or {}
    applied = {(v.criterion.property, v.criterion.radius, v.criterion.min_fraction, v.criterion.basis)
               for v in summary.criterion_verdicts if v.criterion is not None and v.model == model}
    return [{"verdict": "—", "label": "does not apply", "basis": "none", "reason": NOT_APPLYING,
             "scope": (c if c.scale or c.property not in properties else
                       replace(c, scale=str((properties[c.property] or {}).get("scale", "input")))).label,
             "css": "none", "fraction_low": "—", "fraction_high": "—", "note": ""}
            for c in summary.criteria if c.model in (None, model)
            and (c.property, c.radius, c.min_fraction, c.basis) not in applied]


def _outcome_counts(inputs: pd.DataFrame) -> str:
    """'3 violated, 1 certified_safe, 20 undecided' from the table's `outcome` column (zeros left out)."""
    words = list(inputs["outcome"])
    return ", ".join(f"{words.count(w)} {w}" for w in OUTCOMES if words.count(w)) or "none"


def _certify_work(rows: pd.DataFrame) -> int:
    """Bound passes the certification of these rows spent (extra.certify_work)."""
    return sum(int(extra_dict(e).get("certify_work", 0)) for e in rows["extra"])


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
        return ("not used: the outputs are values, not classes (the export's default decision "
                f"'{manifest.get('decision') or 'argmax'}' does not apply)")
    return str(manifest.get("decision") or "—")


def _accuracy_text(manifest: dict) -> str:
    """The export check's accuracy ('' when it measured none)."""
    check = manifest.get("check") or {}
    accuracy = manifest.get("accuracy", check.get("accuracy"))
    if not isinstance(accuracy, (int, float)):
        return ""
    rows = check.get("n_labels") or check.get("n_rows")
    return fmt_percent(accuracy) + (f" on {rows} labelled rows checked at export" if rows else "")


def _load_model(path):
    """The audited artifact as a saferisk Model on the CPU (None without a path)."""
    if path is None:
        return None
    from saferisk.models import load_model

    return load_model(path, device="cpu")


def input_set_domains(provenance: dict) -> dict[str, dict]:
    """{input set: {lower, upper}}: the domains the prepared input sets record (provenance
    'input_sets', saferisk.steps.provenance.input_sets_provenance)."""
    sets = provenance.get("input_sets") or {}
    return {str(k): v["domain"] for k, v in sorted(sets.items())
            if isinstance(v, dict) and isinstance(v.get("domain"), dict)}


def model_domain_manifest(manifest: dict, set_domains: dict[str, dict], input_sets: list[str]) -> dict:
    """The manifest with the domain radii were measured in (saferisk.data.domain.effective_domain):
    its own, else the one domain its audited input sets record (all equal), else none."""
    if manifest.get("domain") is not None:
        return manifest
    domains = [set_domains[s] for s in input_sets if s in set_domains]
    if domains and len(domains) == len(input_sets) and all(d == domains[0] for d in domains):
        return dict(manifest, domain=domains[0])
    return manifest


def _criteria_labels(summary: AuditSummary) -> list[str]:
    """The criteria as their verdicts name them (a criterion without norm once per measured
    norm), then those that read no result."""
    labels = list(dict.fromkeys(v.scope for v in summary.criterion_verdicts if v.criterion is not None))
    judged = {(v.criterion.property, v.criterion.radius, v.criterion.min_fraction, v.criterion.basis, v.criterion.model)
              for v in summary.criterion_verdicts if v.criterion is not None}
    return labels + [f"{c.label}: no audited model measures it" for c in summary.criteria
                     if (c.property, c.radius, c.min_fraction, c.basis, c.model) not in judged]


def summary_context(table: pd.DataFrame, summary: AuditSummary, manifests: dict[str, dict], provenance: dict,
                    audit_date, attachment_name: str, audit_config: dict | None = None) -> dict:
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
        model_rows = table.loc[table["model"] == model]
        facts = input_facts(model_rows, manifests.get(model, {}))
        notes = [(v.scope, misclassified_note(v, model_rows, facts)) for v in summary.criterion_verdicts
                 if v.model == model]
        matrix.append({"model": model, "overall": verdict_dict(overall), "cells": cells,
                       "accuracy": accuracy_view(facts), "notes": [f"{scope}: {note}" for scope, note in notes if note],
                       "sha256": hashes.get("artifact") or next(iter(hashes.values()), "not recorded")})
    properties = []
    for key in sorted({g.key for g in summary.groups}):
        groups = sorted((g for g in summary.groups if g.key == key), key=lambda g: g.model)
        first = groups[0]
        criteria = [c for c in summary.criteria if c.property == first.property and c.norm in (None, first.norm)]
        # the criterion's radius, else a tenth of the maximum radius
        at_radius = criteria[0].radius if criteria else (first.max_radius / 10 if first.max_radius else None)
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
                           "a tenth of the maximum radius: no criterion names this property",
                           "scale": scale_text(first.scale), "unit": radius_unit(first.norm, first.scale),
                           "max_radius": fmt_number(max((g.max_radius or 0.0) for g in groups)),
                           "estimate_without_witness": _estimates_without_witness_text(table, groups),
                           "specification": property_specification(
                               first.property, first.norm, audit_config, None,
                               table.loc[(table["property"] == first.property) & (table["norm"] == first.norm)])})
    context = common_context(provenance, audit_date, "Safety risk audit: summary")
    context.update({"models": models, "keys": keys, "matrix": matrix, "properties": properties,
                    "criteria": _criteria_labels(summary),
                    "basis": basis_statement(summary.criterion_verdicts),
                    "provenance": provenance_rows(provenance, table), "n_rows": int(len(table)),
                    "glossary": glossary_rows(), "specification_supplied": audit_config is not None,
                    "attachment_name": attachment_name})
    return context
