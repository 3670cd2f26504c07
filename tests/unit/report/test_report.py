"""saferisk.report: PDF/A-3u audit reports, checked by opening the PDFs (pypdf, poppler)."""

from __future__ import annotations

from tests.paths import REPO
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pandas as pd
import pytest
from pypdf import PdfReader

from saferisk.audit import AuditSummary, read_table, summarize, table_csv, table_from_results, write_tables
from saferisk.cli import main
from saferisk.io import dumps_json
from saferisk.report import DEFAULT_TEMPLATES_DIR, ReportError, render_model_report, render_summary_report
from saferisk.result import RadiusResult, failed_status
from tests.synthetic import fabricate_results

AUDIT_DATE = "2026-11-20T10:00:00Z"
CNN_SHA = "3f" * 32
TAB_SHA = "a1" * 32
CRITERIA = [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.5, "basis": "certified"},
            {"property": "uncertainty", "norm": "inf", "radius": 0.02, "min_fraction": 0.6, "basis": "estimate"}]
PROVENANCE = {"audit_date": AUDIT_DATE, "config_sha256": "c0" * 32, "git_commit": "0123456789abcdef",
              "versions": {"saferisk": "0.1.0", "torch": "2.13.0", "snakemake": "9.27.1"},
              "device": "cpu", "seeds": {"search": 0}, "data": {"test": "d4" * 32}}
needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
                                   reason="poppler-utils (pdftoppm, pdftotext) not installed")


def manifest(name, sha, input_shape, **extra):
    return {"name": name, "artifact_sha256": sha, "source": {"sha256": "5e" * 32, "path": f"models/{name}.pt"},
            "input_shape": list(input_shape), "domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits",
            "class_names": [str(i) for i in range(10)], "decision": "argmax", "check": {"accuracy": 0.976},
            "versions": {"torch": "2.13.0"}, **extra}


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """Two models: an image CNN (3 property-norms, 2 failed inputs) and a tabular net."""
    root = tmp_path_factory.mktemp("audit")
    results = fabricate_results("digits-cnn", [("robustness", "inf"), ("robustness", "2"), ("uncertainty", "inf")],
                                40, input_shape=(1, 8, 8), max_radius=0.1, witness_root=root / "w-cnn",
                                model_sha256=CNN_SHA, failed_inputs=2)
    results += fabricate_results("acas-like", [("robustness", "inf"), ("reachability", "inf")], 30, input_shape=(5,),
                                 witness_root=root / "w-tab", model_sha256=TAB_SHA, seed=1)
    parquet, _ = write_tables(table_from_results(results), root / "tables")
    table = read_table(parquet)
    manifests = {"digits-cnn": manifest("digits-cnn", CNN_SHA, (1, 8, 8)),
                 "acas-like": manifest("acas-like", TAB_SHA, (5,), feature_names=["rho", "theta", "psi", "v_own", "v_int"],
                                       domain={"lower": [0, -3.14, -3.14, 100, 0], "upper": [60760, 3.14, 3.14, 1200, 1200]})}
    for name, data in manifests.items():
        (root / f"{name}.json").write_text(json.dumps(data))
    (root / "criteria.json").write_text(json.dumps({"criteria": CRITERIA}))
    (root / "provenance.json").write_text(json.dumps(PROVENANCE))
    summary = summarize(table, CRITERIA, models=sorted(manifests))
    return {"root": root, "table": table, "parquet": parquet, "summary": summary, "manifests": manifests}


@pytest.fixture(scope="module")
def cnn_pdf(audit):
    out = audit["root"] / "reports" / "digits-cnn.pdf"
    start = time.perf_counter()
    render_model_report(audit["table"], audit["summary"], audit["manifests"]["digits-cnn"], PROVENANCE, out,
                        witnesses_root=audit["root"] / "w-cnn")
    return out, time.time(), time.perf_counter() - start


def test_reports_from_the_summary_read_back_are_byte_identical(audit, cnn_pdf, tmp_path):
    """The reports accept the AuditSummary read back from its JSON (<m>.summary.json) and give
    the same bytes as from the one `summarize` returned."""
    loaded = AuditSummary.from_dict(json.loads(dumps_json(audit["summary"].to_dict())))
    assert loaded.to_dict() == audit["summary"].to_dict()
    model_pdf = render_model_report(audit["table"], loaded, audit["manifests"]["digits-cnn"], PROVENANCE,
                                    tmp_path / "digits-cnn.pdf", witnesses_root=audit["root"] / "w-cnn")
    assert model_pdf.read_bytes() == cnn_pdf[0].read_bytes()
    computed = render_summary_report(audit["table"], audit["summary"], audit["manifests"], PROVENANCE,
                                     tmp_path / "summary.pdf")
    from_json = render_summary_report(audit["table"], loaded, audit["manifests"], PROVENANCE, tmp_path / "loaded.pdf")
    assert from_json.read_bytes() == computed.read_bytes()


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def squashed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_model_report_contents(audit, cnn_pdf):
    path, _, seconds = cnn_pdf
    reader = PdfReader(path)
    assert 8 <= len(reader.pages) <= 26  # 3 sections with per-input tables of 40 rows, appendices, approval
    text = pdf_text(path)
    overall = audit["summary"].overall("digits-cnn")
    assert overall.verdict == "PASS" and overall.basis == "mixed"
    assert f"Overall verdict: {overall.label}" in " ".join(text.split())
    assert CNN_SHA in squashed(text)
    for title in ("robustness · L∞ norm", "robustness · L2 norm", "uncertainty · L∞ norm"):
        assert text.count(title) >= 2, title  # section heading + running header / contents
    for heading in ("Executive summary", "Method, in plain words", "Worst-case inputs", "Provenance"):
        assert heading in text
    assert "not a guarantee" in text and "above the true radius for most inputs" in " ".join(text.split())
    assert "2 of 40 inputs failed (NaN outputs: 2)" in text
    assert re.search(r"Page 3 of \d+", text)
    # the certified/estimate split is stated
    assert "Estimate only (not a guarantee): uncertainty-inf" in " ".join(text.split())
    assert "0123456789abcdef" in text and "9.27.1" in text  # provenance
    assert "Audit config SHA-256: SHA-256 of the validated audit configuration" in " ".join(text.split())
    # running header and footer on every page after the cover (WeasyPrint string-set)
    for page in reader.pages[1:]:
        page_text = " ".join(page.extract_text().split())
        assert "saferisk audit · digits-cnn" in page_text
        assert f"Audit of 2026-11-20 · model SHA-256 {CNN_SHA[:16]}" in page_text
    assert "-0.0%" not in text  # rounding residues are not shown as negative shares
    # inputs violated at x0 are named where the worst cases are shown, not silently left out
    violated = audit["table"].query("model == 'digits-cnn' and status == 'violated_at_input'")
    assert len(violated) > 0
    flat = " ".join(text.split())
    assert "already violate" in flat and f"{violated.iloc[0]['input_set']}/{violated.iloc[0]['input_id']}" in flat
    assert reader.metadata.title == "Safety risk audit: digits-cnn"
    assert reader.metadata.creation_date == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)
    assert seconds < 30  # ~1-3 s on an idle machine


def test_model_report_archival(audit, cnn_pdf):
    path = cnn_pdf[0]
    reader = PdfReader(path)
    assert reader.pdf_header == "%PDF-1.7"
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert re.search(r'pdfaid:part="3"', xmp) and re.search(r'pdfaid:conformance="U"', xmp)
    attachments = reader.attachments
    assert list(attachments) == ["audit-digits-cnn.csv", "witnesses-digits-cnn.npz"]  # each listed once
    rows = audit["table"].loc[audit["table"]["model"] == "digits-cnn"]
    csv = attachments["audit-digits-cnn.csv"][0].decode()
    assert csv == table_csv(rows)
    assert len(pd.read_csv(__import__("io").StringIO(csv))) == 120
    assert "/AF" in reader.trailer["/Root"]  # PDF/A-3 associated file


@needs_poppler
def test_pages_render_and_no_text_runs_off_the_page(audit, cnn_pdf, tmp_path):
    summary_pdf = render_summary_report(audit["table"], audit["summary"], audit["manifests"], PROVENANCE,
                                        tmp_path / "summary.pdf")
    tab_pdf = render_model_report(audit["table"], audit["summary"], audit["manifests"]["acas-like"], PROVENANCE,
                                  tmp_path / "acas-like.pdf", witnesses_root=audit["root"] / "w-tab")
    for pdf in (cnn_pdf[0], summary_pdf, tab_pdf):
        n_pages = len(PdfReader(pdf).pages)
        subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / pdf.stem)], check=True)
        pngs = sorted(tmp_path.glob(f"{pdf.stem}-*.png"))
        assert len(pngs) == n_pages and all(p.stat().st_size > 2000 for p in pngs)
        bbox = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
        assert_words_inside_pages(bbox, pdf.name)
    tab_text = " ".join(pdf_text(tab_pdf).split())
    # tabular witnesses as feature differences, raw units and fractions of the domain width both labelled
    assert ("feature original (input units) witness (input units) change (input units) "
            "change (fraction of domain width)") in tab_text
    assert re.search(r"\b(rho|theta|psi|v_own|v_int) -?\d", tab_text)
    summary_text = pdf_text(summary_pdf)
    assert "2 models audited" in summary_text and "acas-like" in summary_text
    assert summarize(audit["table"], CRITERIA).overall("acas-like").label in " ".join(summary_text.split())
    assert list(PdfReader(summary_pdf).attachments) == ["audit.csv"]


def assert_words_inside_pages(bbox_html: str, name: str, margin: float = 20.0) -> None:
    """Every word box lies on its page, at least `margin` pt inside the left/right/bottom edges."""
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', bbox_html, re.S)
    assert pages, name
    n_words = 0
    for number, (width, height, body) in enumerate(pages, 1):
        width, height = float(width), float(height)
        for x0, y0, x1, y1, word in re.findall(
                r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">(.*?)</word>', body):
            n_words += 1
            assert margin <= float(x0) and float(x1) <= width - margin, f"{name} page {number}: {word!r} x {x0}..{x1}"
            assert 0 <= float(y0) and float(y1) <= height - margin, f"{name} page {number}: {word!r} y {y0}..{y1}"
    assert n_words > 200


def test_byte_identical_in_another_process_on_a_later_day(audit, cnn_pdf, tmp_path):
    """Re-render through the CLI in a fresh process, other time zone, later wall-clock time."""
    path, rendered_at, _ = cnn_pdf
    time.sleep(max(0.0, 1.2 - (time.time() - rendered_at)))
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["TZ"] = "Pacific/Kiritimati"
    root = audit["root"]
    again = tmp_path / "again.pdf"
    subprocess.run([sys.executable, "-m", "saferisk", "report", "--table", str(audit["parquet"]),
                    "--manifest", str(root / "digits-cnn.json"), "--out", str(again),
                    "--criteria", str(root / "criteria.json"), "--provenance", str(root / "provenance.json"),
                    "--witnesses", str(root / "w-cnn")], check=True, env=env, cwd=tmp_path, capture_output=True)
    assert again.read_bytes() == path.read_bytes()


# ----------------------------------------------------------------------------- bad data

def bad_results():
    """A model with a failed input, NaN radii, and a criterion on a property without results."""
    rows = [RadiusResult(input_id=str(i), property="robustness", norm="inf", max_radius=0.1, model="broken",
                         model_sha256="bb" * 32, input_set="test", radius_lower=0.03, radius_estimate=0.05,
                         radius_upper=None, radius_lower_method="ibp") for i in range(28)]
    rows += [RadiusResult(input_id=str(i), property="robustness", norm="inf", max_radius=0.1, model="broken",
                          model_sha256="bb" * 32, input_set="test", status=failed_status("NaN outputs"))
             for i in (28, 29)]
    rows += [RadiusResult(input_id=str(i), property="uncertainty", norm="inf", max_radius=0.1, model="broken",
                          model_sha256="bb" * 32, input_set="test", radius_lower=float("nan"),
                          radius_estimate=float("nan"), radius_upper=float("nan"),
                          radius_lower_method="not certified: no linear bound for this property") for i in range(5)]
    return rows


def test_bad_data_is_stated_where_the_number_would_be(tmp_path):
    from saferisk.audit import normalise_table

    table = table_from_results(bad_results())
    failed_model = table_from_results([RadiusResult(input_id=str(i), property="robustness", norm="inf", max_radius=0.1,
                                                    model="dead", input_set="test",
                                                    status=failed_status("non-finite model outputs (NaN/inf) at the input"))
                                       for i in range(3)])
    table = normalise_table(pd.concat([table, failed_model], ignore_index=True))
    criteria = CRITERIA + [{"property": "reachability-inf", "radius": 0.02, "min_fraction": 0.5, "model": "broken"}]
    summary = summarize(table, criteria, models=["broken", "dead"])
    out = render_model_report(table, summary, manifest("broken", "bb" * 32, (4,)), PROVENANCE, tmp_path / "broken.pdf")
    text = " ".join(pdf_text(out).split())
    assert "Overall verdict: INCONCLUSIVE" in text
    assert "2 of 30 inputs failed (NaN outputs: 2)" in text
    assert "no results for reachability-inf" in text
    # NaN radii of uncertainty: no number, the reason instead
    assert "not available: no input certified (not certified: no linear bound for this property: 5)" in text
    assert "not available: no estimate computed" in text
    dead = render_model_report(table, summary, manifest("dead", "dd" * 32, (4,)), PROVENANCE, tmp_path / "dead.pdf")
    dead_text = " ".join(pdf_text(dead).split())
    assert "The audit of this model failed" in dead_text
    assert "not available: 3 of 3 inputs failed (non-finite model outputs (NaN/inf) at the input: 3)" in dead_text
    assert "Overall verdict: INCONCLUSIVE" in dead_text


def test_estimates_outside_the_bracket_are_called_out(tmp_path):
    """An estimate above the witness is provably too high, one below the certified bound too low."""
    rows = [RadiusResult(input_id=str(i), property="robustness", norm="inf", max_radius=0.1, model="m",
                         input_set="test", status="ok", value_at_x0=1.0, radius_lower=0.05, radius_upper=0.06,
                         radius_estimate=estimate, radius_lower_method="crown", estimate_exceeds_upper=estimate > 0.06)
            for i, estimate in enumerate([0.04, 0.03, 0.055, 0.07])]
    table = table_from_results(rows)
    out = render_model_report(table, summarize(table), manifest("m", "cc" * 32, (4,)), PROVENANCE, tmp_path / "m.pdf")
    text = " ".join(pdf_text(out).split())
    assert "For 2 inputs the estimate lies below the certified lower bound: there the estimate is provably too low" in text
    assert "For 1 input the estimate exceeds the witness upper bound: there the estimate is provably too high" in text


def small_audit():
    table = table_from_results(fabricate_results("tiny", [("robustness", "inf")], 5, input_shape=(3,)))
    return table, summarize(table), manifest("tiny", "ee" * 32, (3,))


def copied_templates(tmp_path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES_DIR, target)
    return target


def test_missing_stylesheet_or_image_raises(tmp_path):
    table, summary, man = small_audit()
    templates = copied_templates(tmp_path)
    (templates / "base.css").unlink()
    with pytest.raises(ReportError, match="report asset missing.*base.css"):
        render_model_report(table, summary, man, PROVENANCE, tmp_path / "a.pdf", templates_dir=templates)
    templates = copied_templates(tmp_path / "2")
    page = templates / "model_report.html.j2"
    page.write_text(page.read_text().replace("<body>", '<body><img src="logo.png">'))
    with pytest.raises(ReportError, match="logo.png"):
        render_model_report(table, summary, man, PROVENANCE, tmp_path / "b.pdf", templates_dir=templates)
    assert not (tmp_path / "a.pdf").exists() and not (tmp_path / "b.pdf").exists()


def test_undefined_variable_and_missing_date_raise(tmp_path):
    table, summary, man = small_audit()
    templates = copied_templates(tmp_path)
    page = templates / "model_report.html.j2"
    page.write_text(page.read_text().replace("<body>", "<body>{{ organisation_logo }}"))
    with pytest.raises(jinja2.UndefinedError, match="organisation_logo"):
        render_model_report(table, summary, man, PROVENANCE, tmp_path / "a.pdf", templates_dir=templates)
    with pytest.raises(ReportError, match="audit_date"):
        render_model_report(table, summary, man, {"git_commit": "x"}, tmp_path / "b.pdf")
    with pytest.raises(ReportError, match="not an ISO 8601 date"):
        render_model_report(table, summary, man, {"audit_date": "last Tuesday"}, tmp_path / "c.pdf")


def test_cli_errors(tmp_path, capsys):
    assert main(["report", "--table", str(tmp_path / "none.parquet"), "--manifest", "m.json",
                 "--out", str(tmp_path / "x.pdf")]) == 2
    assert "none.parquet: audit table not found" in capsys.readouterr().err


def test_cli_refuses_a_criterion_the_table_never_measured(audit, tmp_path, capsys):
    (tmp_path / "criteria.json").write_text(json.dumps({"criteria": [
        {"property": "robustnes", "norm": "inf", "radius": 0.02, "min_fraction": 0.5}]}))
    code = main(["report", "--table", str(audit["parquet"]), "--manifest", str(audit["root"] / "digits-cnn.json"),
                 "--criteria", str(tmp_path / "criteria.json"), "--out", str(tmp_path / "x.pdf")])
    err = capsys.readouterr().err
    assert code == 2 and "criteria[0].property: property 'robustnes' in norm inf is not measured by the table" in err and "robustness (inf)" in err
    assert not (tmp_path / "x.pdf").exists()


def test_real_results_from_the_radius_engine(tmp_path):
    """One report from radii computed by saferisk.radius on the shipped demo CNN."""
    radius = pytest.importorskip("saferisk.radius")
    onnx_path = REPO / "saferisk" / "demo" / "digits_cnn.onnx"
    data_path = REPO / "saferisk" / "demo" / "digits_test.npz"
    if not onnx_path.exists() or not data_path.exists():
        pytest.skip("demo model not built")
    import numpy as np

    from saferisk.data.domain import Domain
    from saferisk.models.load import load_model
    from saferisk.properties import Robustness
    from saferisk.search import SearchConfig

    model = load_model(onnx_path, name="digits-cnn")
    data = np.load(data_path)
    X, y = data["X"][:3], data["y"][:3]
    results = radius.compute_radii(model, X, Robustness(), "inf", 0.1, Domain.scalar(0.0, 1.0, 64), labels=y,
                                   search=SearchConfig(mode="fast", max_iterations=10, n_starts=1, n_random=32,
                                                                gradient_steps=5, shrink_steps=2, budget=2000), certify=False, seed=0,
                                   witness_path=tmp_path / "w" / "robustness-inf.npz", witness_ref="robustness-inf.npz")
    for r in results:
        r.input_set = "digits"
    table = table_from_results(results)
    assert len(table) == 3 and table["radius_estimate"].notna().any()
    summary = summarize(table, [{"property": "robustness-inf", "radius": 0.01, "min_fraction": 0.5}])
    out = render_model_report(table, summary, manifest("digits-cnn", model.sha256 or "00", (1, 8, 8)),
                              PROVENANCE, tmp_path / "real.pdf", witnesses_root=tmp_path / "w")
    text = " ".join(pdf_text(out).split())
    assert "robustness · L∞ norm" in text and "Overall verdict:" in text
    if table["radius_upper"].notna().any():
        assert "witness at distance" in text and "witness not available" not in text


def test_report_cli_accepts_an_export_manifest(tmp_path):
    """`saferisk report --manifest results/models/<m>/manifest.json` (as written by
    `saferisk export`, without a 'name') names the report after the table's model."""
    import numpy as np
    from pypdf import PdfReader

    from saferisk.audit import table_from_results, write_tables
    from saferisk.cli import main
    from saferisk.data.domain import Domain
    from saferisk.demo import demo_path
    from saferisk.models import load_model
    from saferisk.properties import make_property
    from saferisk.radius import compute_radii

    assert main(["export", "--source", str(demo_path("digits_mlp.onnx")), "--domain=0,1",
                 "--out", str(tmp_path / "m")]) == 0
    model = load_model(tmp_path / "m" / "model.onnx", name="digits_mlp")
    with np.load(demo_path("digits_test.npz")) as data:
        X = data["X"][:2]
    results = compute_radii(model, X, make_property({"kind": "robustness"}), "inf", 0.2,
                            Domain.scalar(0, 1, 64), certify=False)
    for r in results:
        r.input_set = "digits"
    write_tables(table_from_results(results), tmp_path / "t")
    out = tmp_path / "r.pdf"
    assert main(["report", "--table", str(tmp_path / "t" / "audit.parquet"), "--manifest",
                 str(tmp_path / "m" / "manifest.json"), "--out", str(out), "--audit-date", "2026-11-25"]) == 0
    text = "".join(page.extract_text() for page in PdfReader(out).pages[:2])
    assert "digits_mlp" in text and model.sha256[:16] in text.replace("\n", "")


def test_number_formats_for_auditors():
    from saferisk.audit.verdict import Criterion
    from saferisk.report.context import _capped_text, _min_upper_text
    from saferisk.report.render import fmt_percent

    assert fmt_percent(-1e-17) == "0.0%" and fmt_percent(0.25) == "25.0%" and fmt_percent(None) == "—"
    assert (Criterion("reachability", "inf", 0.05, 1.0, scale="domain").label
            == "reachability-inf: all inputs safe within L∞ radius 0.05 (fraction of domain width), certified")
    assert Criterion("robustness", None, 0.02, 0.95).label.startswith("robustness (each measured norm): at least 95% of inputs")
    assert _capped_text("0.3", True) == "≥ 0.3 (max radius)" and _capped_text("0.1", False) == "0.1"
    assert _min_upper_text("0", 1) == "0 (violated at an input)" and _min_upper_text("0", 0) == "0"


def test_each_property_section_counts_the_tables_outcome_words(audit, tmp_path):
    """The report and the table use the same per-input words (violated / certified_safe /
    undecided / failed), counted per property section."""
    from saferisk.audit.table import outcomes

    table = read_table(audit["parquet"])
    rows = table.loc[(table["model"] == "digits-cnn") & (table["property"] == "robustness") & (table["norm"] == "inf")]
    words = list(outcomes(rows))
    expected = ", ".join(f"{words.count(w)} {w}" for w in ("violated", "certified_safe", "undecided", "failed")
                         if words.count(w))
    text = pdf_text(render_model_report(table, summarize(table, models=["digits-cnn"]),
                                        json.loads((audit["root"] / "digits-cnn.json").read_text()),
                                        PROVENANCE, tmp_path / "m.pdf"))
    assert expected and f"outcome column): {expected}." in " ".join(text.split())
    # each worst case shown names its input's word from the table
    found = rows.assign(word=words).loc[rows["radius_upper"].notna() & (rows["status"] == "ok")]
    closest = found.sort_values(["radius_upper", "input_set", "input_id"], kind="mergesort").iloc[0]
    assert closest["word"] == "violated"
    head = f"input {closest['input_id']} ({closest['input_set']}): violated, witness at distance"
    assert head in " ".join(text.split())
