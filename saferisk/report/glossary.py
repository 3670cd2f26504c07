"""What every column of the audit table means: the reports' glossary appendix.

One line per column of saferisk.audit.table.TABLE_COLUMNS (the attached CSV holds them all but
the timing columns), plus the keys `extra` may hold. A column added to the table without a
line here makes `glossary_rows` raise, so the glossary cannot fall behind the table.
"""

from __future__ import annotations

from saferisk.audit.table import TABLE_COLUMNS, TIMING_COLUMNS

COLUMN_GLOSSARY: dict[str, str] = {
    "model": "Name of the audited model (a key of `models` in the audit configuration).",
    "input_set": "Name of the input set the input comes from (a key of `input_sets`).",
    "property": "Name of the safety property (a key of `properties`); the report's specification "
                "section states its kind and parameters.",
    "norm": "How the distance from the input is measured: inf = L∞ (largest change of any single "
            "feature), 2 = L2 (Euclidean length of the change), 1 = L1 (sum of the absolute changes).",
    "input_id": "Identifier of the input within its input set (its row number, or the id the set gives).",
    "max_radius": "Largest distance searched and certified, in the unit of `scale`. Nothing is claimed "
                  "beyond it.",
    "model_sha256": "SHA-256 of the model file the radii were computed on; it must equal the hash on the cover.",
    "label": "The input's true class from the input set (empty when the set has no labels, e.g. regression).",
    "decision": "The class the model decides for the unchanged input (e.g. argmax of the outputs); "
                "decision ≠ label means the input is misclassified. Moot for regression outputs.",
    "value_at_x0": "The property's margin w at the unchanged input (for invariance: at the reference input); "
                   "the property holds while w > threshold.",
    "threshold": "The value c the margin must stay above (e.g. 0 for robustness, epsilon for uncertainty).",
    "radius_lower": "Certified lower bound on the maximum safe radius, from sound bound propagation: every "
                    "input within this distance satisfies the property. Empty when not certified "
                    "(see radius_lower_method). The only number that is a guarantee.",
    "radius_lower_method": "The bound method that certified radius_lower (ibp, crown, alpha-crown, bab), or the "
                           "reason no lower bound exists.",
    "radius_estimate": "The paper's Lipschitz estimate r̂ = min(max_radius, (w(x0) − c) / L̂). An estimate, NOT "
                       "a guarantee: it can lie above the true radius.",
    "lipschitz_estimate": "L̂, the steepest change of the margin w per unit distance that the search found "
                          "(a lower estimate of the Lipschitz constant).",
    "radius_upper": "Distance of the closest witness: a concrete input that violates the property, re-checked "
                    "by a fresh forward pass. The true radius is at most this. Empty when no witness was found "
                    "within max_radius (which does not prove safety); 0 when the property fails at the input itself.",
    "witness_ref": "Where the witness is stored: '<.npz file relative to the model's radius folder>#<key>'; the "
                   "model report attaches the witness arrays, keyed by this reference.",
    "estimate_exceeds_upper": "True when radius_estimate > radius_upper: the estimate is then provably too high.",
    "scale": "Unit of every radius in the row: input = the model's input units; domain = fractions of each "
             "feature's domain width (a change of 0.1 moves a feature by 10% of its range).",
    "search_mode": ("The witness/Lipschitz search and its settings (mode, starts, iterations, evaluation budget, "
                    "minimal-norm attack steps x restarts)."),
    "evaluations": "Forward evaluations of the model the search spent on this input.",
    "seconds": "Wall-clock seconds of the search. Not in the attached CSV and not part of the evidence: it "
               "depends on the machine; the pipeline keeps it beside the model's results table, as "
               "<model>.timings.csv in the audit's tables folder.",
    "certify_seconds": "Wall-clock seconds of the certification. Not in the attached CSV and not part of the "
                       "evidence: it depends on the machine; kept as <model>.timings.csv in the audit's tables folder.",
    "device": "Where the radius job ran (cpu, cuda:0, ...).",
    "evaluator": "What ran the forward passes: torch (saferisk's graph of the model) or onnxruntime.",
    "seed": "Random seed of the search (results are reproducible for a fixed seed).",
    "saferisk_version": "Version of saferisk that computed the row.",
    "status": "ok (assessed), violated_at_input (the property fails at the unchanged input: radius 0), or "
              "'failed: <reason>' (the input could not be assessed; never counted as safe).",
    "extra": "Further facts as JSON, e.g. certify_work (bound passes spent), certify_budget_exhausted / "
             "certify_clock_capped (the work budget / wall-clock cap ended certification early), "
             "witness_margin (the margin at the witness), and for invariance reference_id / "
             "reference_distance / references (the differently labelled input(s) the radius was measured around).",
    "shard": "The result file the row came from (bookkeeping of the pipeline).",
    "outcome": "What is known within max_radius: violated (a witness was found, or the property fails at the "
               "input), certified_safe (proved safe up to max_radius), undecided (neither), failed. It does NOT "
               "mean: pass/fail of a criterion (criteria judge a radius of their own, often far below max_radius; "
               "a PASS model can have every row 'violated'), that the model is wrong on the input (see label and "
               "decision), or, for undecided, any statement of safety.",
}


def code_markup(text: str):
    """`text` escaped for HTML, with each `name` in backticks set as <code>name</code>."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    return Markup("".join(str(escape(p)) if i % 2 == 0 else f"<code>{escape(p)}</code>"
                          for i, p in enumerate(parts)))


def glossary_rows() -> list[dict]:
    """[{'column', 'meaning', 'in_csv'}] for every table column, in table order (meaning:
    HTML markup, names in backticks as code)."""
    missing = [c for c in TABLE_COLUMNS if c not in COLUMN_GLOSSARY]
    if missing:
        raise KeyError(f"saferisk.report.glossary lacks a line for table column(s) {', '.join(missing)}")
    return [{"column": c, "meaning": code_markup(COLUMN_GLOSSARY[c]), "in_csv": c not in TIMING_COLUMNS} for c in TABLE_COLUMNS]
