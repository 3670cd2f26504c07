"""Per-input facts of the reports: label, decision, correctness, the model's accuracy on the
audited inputs (from the table's `label` and `decision` columns), misclassified inputs named,
the per-input table of a property section, and why an input violates a property at itself
(for invariance: its reference input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from saferisk.audit.states import input_states
from saferisk.audit.table import extra_dict, sort_table
from saferisk.audit.verdict import Verdict
from saferisk.report.render import fmt_number, fmt_percent
from saferisk.result import STATUS_VIOLATED_AT_INPUT


def _int_or_none(value) -> int | None:
    return None if value is None or value is pd.NA or value != value else int(value)


@dataclass
class InputFacts:
    """Label and decision of every audited input of one model, keyed by (input_set, input_id)."""

    labels: dict[tuple[str, str], int | None] = field(default_factory=dict)
    decisions: dict[tuple[str, str], int | None] = field(default_factory=dict)
    classifies: bool = True  # False for regression outputs: no classes, no accuracy
    class_names: list[str] = field(default_factory=list)

    def class_text(self, index: int | None) -> str:
        """'8', or '8 (cat)' when the class has a name other than its index."""
        if index is None:
            return "—"
        name = self.class_names[index] if 0 <= index < len(self.class_names) else str(index)
        return str(index) if name == str(index) else f"{index} ({name})"

    def misclassified(self, key: tuple[str, str]) -> bool:
        label, decision = self.labels.get(key), self.decisions.get(key)
        return self.classifies and label is not None and decision is not None and label != decision

    def correctness(self, key: tuple[str, str]) -> str:
        label, decision = self.labels.get(key), self.decisions.get(key)
        if not self.classifies or label is None or decision is None:
            return "—"
        return "yes" if label == decision else "NO (misclassified)"

    def describe(self, key: tuple[str, str]) -> str:
        """'input 16 (digits): label 8, predicted 1 — misclassified'."""
        verdict = "misclassified" if self.misclassified(key) else "correct"
        return (f"input {key[1]} ({key[0]}): label {self.class_text(self.labels.get(key))}, "
                f"predicted {self.class_text(self.decisions.get(key))} — {verdict}")


def input_facts(rows: pd.DataFrame, manifest: dict) -> InputFacts:
    """The label and decision of each input, from every row of the model that records them."""
    facts = InputFacts(classifies=str(manifest.get("output_kind") or "") != "regression",
                       class_names=[str(c) for c in manifest.get("class_names") or []])
    for input_set, input_id, label, decision in zip(rows["input_set"], rows["input_id"], rows["label"],
                                                    rows["decision"]):
        key = (str(input_set), str(input_id))
        if facts.labels.get(key) is None:
            facts.labels[key] = _int_or_none(label)
        if facts.decisions.get(key) is None:
            facts.decisions[key] = _int_or_none(decision)
    return facts


def accuracy_view(facts: InputFacts) -> dict:
    """{'available', 'text', 'misclassified': [{'name', 'text'}]}: accuracy on the audited
    inputs that have a label and a decision, and the misclassified ones named."""
    if not facts.classifies:
        return {"available": False, "text": "not applicable (regression outputs: no classes)", "misclassified": []}
    keys = sorted(k for k in facts.labels if facts.labels[k] is not None and facts.decisions.get(k) is not None)
    if not keys:
        return {"available": False, "text": "not available: the audited inputs have no labels", "misclassified": []}
    wrong = [k for k in keys if facts.misclassified(k)]
    correct = len(keys) - len(wrong)
    unlabelled = len(facts.labels) - len(keys)
    text = f"{fmt_percent(correct / len(keys))} ({correct} of {len(keys)} labelled inputs correct"
    text += f"; {unlabelled} without label or decision)" if unlabelled else ")"
    order = sort_table(pd.DataFrame({"model": "", "input_set": [k[0] for k in wrong], "property": "", "norm": "",
                                     "input_id": [k[1] for k in wrong]}))
    named = [(s, i) for s, i in zip(order["input_set"], order["input_id"])]
    return {"available": True, "text": text,
            "misclassified": [{"name": f"{s}/{i}", "text": facts.describe((s, i)),
                               "short": f"input {i} ({s}): label {facts.class_text(facts.labels.get((s, i)))}, "
                                        f"predicted {facts.class_text(facts.decisions.get((s, i)))}"}
                              for s, i in named]}


def _radius_cell(value, violated: bool) -> str:
    if violated:
        return "0 (at the input)"
    return fmt_number(value)


def input_table(inputs: pd.DataFrame, facts: InputFacts, max_rows: int) -> dict:
    """The per-input rows of one property section: label, prediction, correct, the three radii,
    the outcome word (and the reference input for invariance). With more than `max_rows`
    inputs the misclassified and then those with the smallest radii are shown."""
    keys = list(zip(inputs["input_set"].astype(str), inputs["input_id"].astype(str)))
    references = [str(extra_dict(e).get("reference_id", "")) for e in inputs["extra"]]
    shown = np.arange(len(inputs))
    if len(inputs) > max_rows:
        risk = inputs["radius_upper"].fillna(inputs["radius_lower"]).fillna(np.inf).to_numpy(dtype=float)
        wrong = np.array([facts.misclassified(k) for k in keys])
        order = np.lexsort((risk, ~wrong))  # misclassified first, then the smallest radii
        shown = np.sort(order[:max_rows])
    rows = []
    for i in shown:
        row, key = inputs.iloc[i], keys[i]
        violated = row["status"] == STATUS_VIOLATED_AT_INPUT
        rows.append({"input_set": key[0], "input_id": key[1], "label": facts.class_text(facts.labels.get(key)),
                     "decision": facts.class_text(facts.decisions.get(key)), "correct": facts.correctness(key),
                     "misclassified": facts.misclassified(key),
                     "lower": fmt_number(row["radius_lower"]) if not violated else "0",
                     "estimate": _radius_cell(row["radius_estimate"], violated),
                     "upper": _radius_cell(row["radius_upper"], violated),
                     "margin": fmt_number(row["value_at_x0"]),
                     "outcome": str(row["outcome"]), "reference": references[i]})
    return {"rows": rows, "n_hidden": len(inputs) - len(shown), "classifies": facts.classifies,
            "has_reference": any(references)}


def violation_causes(inputs: pd.DataFrame, facts: InputFacts, limit: int) -> list[dict]:
    """[{'name', 'cause'}] of the inputs that violate the property at the unchanged input. For
    invariance the radius is measured around a reference input: the cause is named there."""
    causes = []
    for _, row in inputs.loc[inputs["status"] == STATUS_VIOLATED_AT_INPUT].head(limit).iterrows():
        key = (str(row["input_set"]), str(row["input_id"]))
        reference = extra_dict(row["extra"]).get("reference_id")
        if reference is None:
            cause = (f"the property fails at the unchanged input (margin {fmt_number(row['value_at_x0'])} "
                     f"≤ threshold {fmt_number(row['threshold'])})")
        else:
            ref_key = (key[0], str(reference))
            label = facts.labels.get(key)
            ref_label, ref_decision = facts.labels.get(ref_key), facts.decisions.get(ref_key)
            cause = (f"the cause is its reference input {reference} (a nearby input with a different label), "
                     f"which the model already gives label {facts.class_text(label)}, this input's label")
            if ref_decision is not None and ref_label is not None and ref_decision != ref_label:
                cause += (f": input {reference} is itself misclassified (label {facts.class_text(ref_label)}, "
                          f"predicted {facts.class_text(ref_decision)})")
            if facts.labels.get(key) is not None and facts.decisions.get(key) is not None:
                cause += (f". Input {key[1]} itself is "
                          + ("misclassified" if facts.misclassified(key) else "classified correctly"))
            cause += "."
        causes.append({"name": f"{key[0]}/{key[1]}", "cause": cause})
    return causes


def misclassified_note(verdict: Verdict, model_rows: pd.DataFrame, facts: InputFacts) -> str:
    """A criterion's counted inputs that are misclassified, and how each was counted at the
    criterion's radius ('' when none): a robust wrong decision is no safety."""
    criterion = verdict.criterion
    if criterion is None or not facts.classifies:
        return ""
    rows = model_rows.loc[(model_rows["property"] == criterion.property)
                          & ((model_rows["norm"] == criterion.norm) if criterion.norm else True)]
    keys = list(zip(rows["input_set"].astype(str), rows["input_id"].astype(str)))
    wrong = np.array([facts.misclassified(k) for k in keys], dtype=bool)
    if not wrong.any():
        return ""
    states = input_states(rows, criterion.radius)
    safe = states["proven_safe"] if criterion.basis == "certified" else states["estimate_safe"]
    named = []
    for i in np.flatnonzero(wrong):
        how = ("counted as safe" if safe[i] else "counted as unsafe" if states["proven_unsafe"][i]
               else "counted as unknown")
        key = keys[i]
        named.append(f"{key[0]}/{key[1]} (label {facts.class_text(facts.labels.get(key))}, predicted "
                     f"{facts.class_text(facts.decisions.get(key))}; {how})")
    n, count = len(rows), int(wrong.sum())
    note = f"{count} of the {n} counted inputs {'is' if count == 1 else 'are'} misclassified: {', '.join(named)}."
    if any(safe[i] for i in np.flatnonzero(wrong)):
        note += " A misclassified input counted as safe keeps a wrong decision."
    if verdict.verdict == "PASS":
        note = "This PASS counts misclassified inputs. " + note
    return note
