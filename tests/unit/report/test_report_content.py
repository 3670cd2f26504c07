"""What the reports say (issue 26): the specification of each property, labels, predictions and
accuracy, misclassified inputs named, invariance causes, verdict sentences with norm and unit,
curves from r = 0, colour scales, the glossary of the attached table. Checked in the PDF text."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from pypdf import PdfReader

from saferisk.audit import summarize, table_from_results
from saferisk.audit.table import TABLE_COLUMNS
from saferisk.report import render_model_report, render_summary_report
from saferisk.result import STATUS_OK, STATUS_VIOLATED_AT_INPUT, RadiusResult
from tests.synthetic import fabricate_results

PROVENANCE = {"audit_date": "2026-11-20T10:00:00Z", "config_sha256": "c0" * 32}
SEARCH = {"mode": "fast", "budget": 2000}
CERTIFY = {"method": "crown", "work_budget": 400}
CRITERIA = [{"property": "robustness", "norm": "inf", "radius": 0.001, "min_fraction": 0.5, "basis": "certified"},
            {"property": "reachability", "radius": 0.01, "min_fraction": 0.5, "basis": "certified"}]
AUDIT_CONFIG = {
    "models": {"clf": {"domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits", "decision": "argmax"},
               "reg": {"domain": None, "output_kind": "regression", "decision": "argmax"}},
    "input_sets": {"test": {"domain": {"lower": 0.0, "upper": 1.0}, "box": None},
                   "box": {"domain": None, "box": "demo:regression_net.json"}},
    "properties": {
        "robustness": {"kind": "robustness", "params": {}, "norms": ["inf"], "max_radius": 0.1, "scale": "input",
                       "search": SEARCH, "certify": CERTIFY},
        "uncertainty": {"kind": "uncertainty", "params": {"epsilon": 0.1}, "norms": "inf", "max_radius": 0.1,
                        "scale": "input", "search": SEARCH, "certify": CERTIFY},
        "invariance": {"kind": "invariance", "params": {"k": 1}, "norms": "inf", "max_radius": 0.1, "scale": "input",
                       "search": SEARCH, "certify": CERTIFY},
        "reachability": {"kind": "reachability", "params": {"output": 0, "lower": -1.5, "upper": 2.0}, "norms": "inf",
                         "max_radius": 0.5, "scale": "domain", "search": SEARCH, "certify": CERTIFY}},
    "criteria": CRITERIA,
}
N = 12
MISCLASSIFIED = "3"  # label 3, decided 5: the label of input 5, whose invariance reference it is


def classifier_results(witness_root) -> list[RadiusResult]:
    """Robustness and uncertainty (fabricated, with witnesses) and invariance rows whose input 5
    violates at its reference 3, which the model misclassifies as 5."""
    results = fabricate_results("clf", [("robustness", "inf"), ("uncertainty", "inf")], N, input_shape=(1, 8, 8),
                                witness_root=witness_root, model_sha256="cc" * 32, seed=3)
    for i in range(N):
        ok = i != 5
        results.append(RadiusResult(
            input_id=str(i), property="invariance", norm="inf", max_radius=0.1, model="clf", model_sha256="cc" * 32,
            input_set="test", label=i % 10, decision=i % 10, value_at_x0=1.0 if ok else -0.2, threshold=0.0,
            radius_lower=0.02 if ok else 0.0, radius_lower_method="crown", radius_estimate=0.04 if ok else 0.0,
            radius_upper=0.06 if ok else 0.0, status=STATUS_OK if ok else STATUS_VIOLATED_AT_INPUT,
            extra={"reference_id": MISCLASSIFIED if i == 5 else str((i + 1) % N), "reference_distance": 0.8}))
    for r in results:
        if r.input_id == MISCLASSIFIED:
            r.label, r.decision = 3, 5
        if r.property == "uncertainty" and r.status == STATUS_OK:
            r.radius_upper, r.witness_ref = None, None  # no witness up to max_radius, estimates below it
            r.radius_estimate = 0.05
    return results


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    results = classifier_results(root / "w-clf")
    reg = fabricate_results("reg", [("reachability", "inf")], 4, input_shape=(3,), input_set="box", max_radius=0.5,
                            witness_root=root / "w-reg", seed=2)
    results += [replace(r, scale="domain", label=None, decision=0) for r in reg]
    table = table_from_results(results)
    summary = summarize(table, CRITERIA, models=["clf", "reg"])
    manifests = {"clf": {"name": "clf", "artifact_sha256": "cc" * 32, "input_shape": [1, 8, 8],
                         "domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits",
                         "class_names": [str(i) for i in range(10)], "decision": "argmax"},
                 "reg": {"name": "reg", "artifact_sha256": "dd" * 32, "input_shape": [3], "domain": None,
                         "output_kind": "regression", "decision": "argmax"}}
    pdfs = {"clf": render_model_report(table, summary, manifests["clf"], PROVENANCE, root / "clf.pdf",
                                       witnesses_root=root / "w-clf", audit_config=AUDIT_CONFIG),
            "bare": render_model_report(table, summary, manifests["clf"], PROVENANCE, root / "bare.pdf",
                                        witnesses_root=root / "w-clf"),
            "reg": render_model_report(table, summary, manifests["reg"], PROVENANCE, root / "reg.pdf",
                                       witnesses_root=root / "w-reg", audit_config=AUDIT_CONFIG),
            "summary": render_summary_report(table, summary, manifests, PROVENANCE, root / "summary.pdf",
                                             audit_config=AUDIT_CONFIG)}
    return {"root": root, "table": table, "summary": summary, "manifests": manifests, "pdfs": pdfs}


def flat(path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def section(text: str, start: str, end: str) -> str:
    """The text from the heading `start` to the next `end` after it."""
    begin = text.index(start)
    return text[begin:text.index(end, begin + len(start))]


def test_each_property_states_its_specification(audit):
    clf, reg = flat(audit["pdfs"]["clf"]), flat(audit["pdfs"]["reg"])
    robustness = section(clf, "robustness · L∞ norm What was tested", "What was found")
    assert "decision (argmax of the outputs) at the input must not change" in robustness
    assert "0.1 (input units)" in robustness and "L∞: distance = the largest change of any single feature" in robustness
    assert "mode fast, budget 2,000 forward evaluations per input" in robustness
    assert "method crown, work budget 400 bound passes per input" in robustness
    assert "model clf: [0, 1] for every feature; input set test: [0, 1] for every feature" in robustness
    assert "epsilon = 0.1" in section(clf, "uncertainty · L∞ norm What was tested", "What was found")
    assert "invariance: k = 1" in section(clf, "invariance · L∞ norm What was tested", "What was found")
    reach = section(reg, "reachability · L∞ norm What was tested", "What was found")
    assert "output 0 must stay in [-1.5, 2]" in reach and "0.5 (fraction of domain width)" in reach
    assert "input set box: the box of demo:regression_net.json" in reach
    bare = flat(audit["pdfs"]["bare"])
    assert bare.count("specification not supplied") == 3  # one per section, nothing invented
    assert "output 0 must stay" not in bare and "work budget 400" not in bare


def test_labels_predictions_accuracy_and_misclassified_inputs(audit):
    text = flat(audit["pdfs"]["clf"])
    labelled = [r for r in audit["table"].itertuples() if r.model == "clf" and r.property == "invariance"]
    correct = sum(r.label == r.decision for r in labelled)
    assert (correct, len(labelled)) == (N - 1, N)
    accuracy = f"{100 * correct / N:.1f}% ({correct} of {N} labelled inputs correct)"
    assert f"Accuracy on the audited inputs: {accuracy}; misclassified: test/{MISCLASSIFIED}" in text
    assert f"input {MISCLASSIFIED} (test): label 3, predicted 5 — misclassified" in text
    assert "accuracy at export" not in text and "(manifest: the export check)" not in text  # shown only when known
    # the per-input table: label, prediction, correctness, outcome per property
    per_input = section(text, "robustness · L∞ norm What was tested", "Worst-case inputs")
    assert re.search(rf"test/{MISCLASSIFIED} 3 5 NO \(misclassified\) -?[\d.]+ [\d.]+ [\d.]+ [\d.—]+ (violated|undecided)",
                     per_input)
    assert "Radii: L∞ norm, input units" in per_input
    # a criterion that passes with the misclassified input among those counted says so
    verdict = next(v for v in audit["summary"].criterion_verdicts if v.model == "clf")
    assert verdict.verdict == "PASS"
    assert (f"This PASS counts misclassified inputs. 1 of the {N} counted inputs is misclassified: "
            f"test/{MISCLASSIFIED} (label 3, predicted 5;") in text
    summary = flat(audit["pdfs"]["summary"])
    assert f"accuracy on the audited inputs: {accuracy}" in summary
    assert "accuracy on the audited inputs: not applicable (regression outputs: no classes)" in summary
    reg = flat(audit["pdfs"]["reg"])
    assert "label —, predicted" not in reg and "not applicable (regression outputs: no classes)" in reg


def test_invariance_names_the_reference_that_causes_a_violation_at_the_input(audit):
    text = section(flat(audit["pdfs"]["clf"]), "invariance · L∞ norm What was tested", "Radius statistics")
    assert ("test/5: the cause is its reference input 3 (a nearby input with a different label), which the model "
            "already gives label 5, this input's label: input 3 is itself misclassified (label 3, predicted 5). "
            "Input 5 itself is classified correctly.") in text
    assert f"{N} of {N} inputs have a risk found: {N - 1} with a witness" in text
    assert "1 violating the property at the unchanged input itself" in text


def test_verdict_sentences_and_radius_columns_name_norm_and_unit(audit):
    clf, reg = flat(audit["pdfs"]["clf"]), flat(audit["pdfs"]["reg"])
    assert re.search(r"robustness, L∞ norm: \d+ of 12 inputs certified safe within radius 0\.001 \(input units\); "
                     r"\d+ ha(s|ve) a witness within 0\.001; required: at least 50% of inputs", clf)
    assert "reachability, L∞ norm: " in reg and "within radius 0.01 (fraction of domain width)" in reg
    assert "radius r (L∞ norm, input units) certified safe no witness within r estimated safe" in clf
    assert "radius (L∞ norm, input units) mean median min" in clf
    assert "witness at distance" in clf and "(L∞ norm, input units) · certified" in clf
    # regression witnesses: the distance in fractions of the domain width, features in input units, both labelled
    assert "(L∞ norm, fraction of domain width) · certified" in reg
    assert "change (input units)" in reg and "the distance above: L∞ norm, fraction of domain width" in reg


def test_curves_start_at_zero_on_a_fine_grid_and_estimates_without_witness_are_explained(audit):
    group = next(g for g in audit["summary"].groups if g.model == "clf" and g.property == "robustness")
    assert group.radii[0] == 0.0 and len(group.radii) >= 101
    assert group.certified_fraction[0] == pytest.approx(group.n_ok / group.n_inputs)
    clf = flat(audit["pdfs"]["clf"])
    curve = section(clf, "robustness · L∞ norm What was tested", "Per input")
    assert re.search(r"undecided 0 \d+\.\d% ", curve)  # the table starts at r = 0
    uncertainty = section(clf, "uncertainty · L∞ norm What was tested", "Fraction of inputs safe at each radius")
    assert "although the search found no witness up to 0.1. Both can be true" in uncertainty
    summary = flat(audit["pdfs"]["summary"])
    assert "no witness found (upper bound)" in summary and "on the same axes" in summary
    assert "Inputs with an estimate below the maximum radius although the search found no witness up to it: clf:" in summary


def test_witness_heatmaps_have_a_colour_scale_and_cards_share_pages(audit):
    from saferisk.report.plots import difference_figure

    import base64
    import numpy as np

    svg = base64.b64decode(difference_figure(np.array([[0.0, 0.002], [-0.001, 0.0]]), "input units").split(",")[1])
    assert b"change (input units)" in svg and b"+0.002" in svg and b"-0.002" in svg
    pages = [" ".join(p.extract_text().split()) for p in PdfReader(audit["pdfs"]["clf"]).pages]
    cards = [i for i, page in enumerate(pages) for _ in range(page.count("witness at distance"))]
    assert len(cards) >= 3 and max(cards.count(i) for i in set(cards)) >= 2  # several cards per page
    assert "change (input units)" in " ".join(pages)  # the colour bar's label, as text in the PDF


def test_glossary_explains_every_column_of_the_attached_table(audit):
    from saferisk.report import glossary

    for name in ("clf", "summary"):
        pages = [" ".join(p.extract_text().split()) for p in PdfReader(audit["pdfs"][name]).pages]
        text = " ".join(p for p in pages if "Appendix: the columns of the attached table" in p)
        missing = [c for c in TABLE_COLUMNS if not re.search(rf"(?<![\w]){c}(?![\w])", text)]
        assert not missing, f"{name}: glossary lacks {missing}"
        assert "It does NOT mean: pass/fail of a criterion" in text
    rows = glossary.glossary_rows()
    assert [r["column"] for r in rows] == list(TABLE_COLUMNS)
    assert not next(r for r in rows if r["column"] == "seconds")["in_csv"]


def test_a_table_column_without_a_glossary_line_fails(monkeypatch):
    from saferisk.report import glossary

    monkeypatch.setattr(glossary, "COLUMN_GLOSSARY", {k: v for k, v in glossary.COLUMN_GLOSSARY.items()
                                                      if k != "outcome"})
    with pytest.raises(KeyError, match="outcome"):
        glossary.glossary_rows()


def test_reports_with_the_config_are_byte_identical(audit, tmp_path):
    again = render_model_report(audit["table"], audit["summary"], audit["manifests"]["clf"], PROVENANCE,
                                tmp_path / "clf.pdf", witnesses_root=audit["root"] / "w-clf",
                                audit_config=json.loads(json.dumps(AUDIT_CONFIG)))
    assert again.read_bytes() == audit["pdfs"]["clf"].read_bytes()


BOX_DOMAIN = {"lower": [0.0, -1.0, 100.0], "upper": [10.0, 1.0, 1000.0]}


@pytest.fixture(scope="module")
def review_fixes(audit):
    """The review's fixes: the box domain from the prepared input set, a dirty checkout, the
    witness decided by the model itself, the HTML page beside the PDF."""
    from saferisk.report import render_model_report

    root, table, summary, manifests = audit["root"], audit["table"], audit["summary"], audit["manifests"]
    provenance = dict(PROVENANCE, git={"commit": "ab" * 20, "dirty": True},
                      input_sets={"box": {"rows": 4, "features": 3, "sha256": "ee" * 32, "domain": BOX_DOMAIN}})
    reg = render_model_report(table, summary, manifests["reg"], provenance, root / "reg-box.pdf",
                              witnesses_root=root / "w-reg", audit_config=AUDIT_CONFIG, out_html=root / "reg-box.html")
    clf = render_model_report(table, summary, manifests["clf"], PROVENANCE, root / "clf-model.pdf",
                              witnesses_root=root / "w-clf", audit_config=AUDIT_CONFIG,
                              model_path="saferisk/demo/digits_cnn.onnx")
    return {"reg": reg, "reg_html": root / "reg-box.html", "clf": clf}


def test_box_domain_is_stated_and_witness_changes_converted(review_fixes):
    text = flat(review_fixes["reg"])
    assert "x[0] in [0, 10]; x[1] in [-1, 1]; x[2] in [100, 1000]" in text
    assert "change (fraction of domain width)" in text and "not converted" not in text
    assert "domain — (none set at export; radii are measured in the input set's domain" in text


def test_dirty_checkout_is_a_warning_on_the_cover(review_fixes):
    cover = " ".join(PdfReader(review_fixes["reg"]).pages[0].extract_text().split())
    assert "Uncommitted changes:" in cover and "cannot be recovered from the commit alone" in cover


def test_html_page_says_the_files_are_attached_to_the_pdf(review_fixes):
    html = review_fixes["reg_html"].read_text()
    pdf = flat(review_fixes["reg"])
    assert "to the PDF report beside this page" in " ".join(html.split())
    assert "to the PDF report beside this page" not in pdf and "attached to this PDF" in pdf


def test_criteria_name_norm_and_unit_and_inapplicable_ones_are_listed(audit, review_fixes):
    reg, clf = flat(review_fixes["reg"]), flat(audit["pdfs"]["clf"])
    assert "reachability-inf: at least 50% of inputs safe within L∞ radius 0.01 (fraction of domain width)" in reg
    assert "robustness-inf: at least 50% of inputs safe within L∞ radius 0.001 (input units), certified" in clf
    assert "does not apply to this model (property not audited for it)" in reg
    assert "reachability (each measured norm)" in clf and "does not apply to this model" in clf


def test_witness_cards_state_the_decision_at_the_witness(audit, review_fixes):
    import numpy as np
    import torch

    from saferisk.models import load_model
    from saferisk.witness_file import load_witness

    text = flat(review_fixes["clf"])
    model = load_model("saferisk/demo/digits_cnn.onnx", device="cpu")
    rows = audit["table"]
    rows = rows.loc[(rows["model"] == "clf") & (rows["property"] == "robustness") & rows["radius_upper"].notna()]
    first = rows.sort_values(["radius_upper", "input_set", "input_id"], kind="mergesort").iloc[0]
    x0, witness = load_witness(audit["root"] / "w-clf", first["witness_ref"])
    z = model.forward_flat(torch.as_tensor(np.stack([x0, witness])).to(model.dtype)).detach().numpy()
    expected = (f"the model decides the original as {int(np.argmax(z[0]))} and the witness as "
                f"{int(np.argmax(z[1]))}")
    assert expected in section(text, "robustness · L∞ norm What was tested", "uncertainty · L∞ norm")
    assert flat(review_fixes["clf"]) == text  # deterministic text
