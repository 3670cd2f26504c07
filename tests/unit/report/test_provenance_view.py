"""Provenance an assessor can check, read back from the rendered files: document ID, config
hashes equal across reports, git commit, the resolved config as YAML, attachments listed
once (the witness arrays re-checked from the PDF alone), tags, the HTML page."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from pypdf import PdfReader

from saferisk.audit import read_table, summarize, table_csv, table_from_results, write_tables
from saferisk.cli import main
from saferisk.config import build_plan
from saferisk.report import render_model_report, render_summary_report
from saferisk.report.attachments import document_id, npz_bytes
from saferisk.report.provenance import speed_dependence, yaml_text
from saferisk.steps.provenance import git_state, write_run_metadata
from tests.paths import DEMO, REPO
from tests.synthetic import fabricate_results

AUDIT_DATE = "2026-11-20T10:00:00Z"
CNN_SHA = "3f" * 32
CRITERIA = [{"property": "robustness-inf", "radius": 0.02, "min_fraction": 0.5, "basis": "certified"}]


def manifest(name, sha, **extra):
    return {"name": name, "artifact_sha256": sha, "source": {"sha256": "5e" * 32, "path": f"models/{name}.onnx"},
            "input_shape": [1, 8, 8], "domain": {"lower": 0.0, "upper": 1.0}, "output_kind": "logits",
            "class_names": [str(i) for i in range(10)], "decision": "argmax", **extra}


def pdf_text(path) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(path).pages)


def squashed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def demo_plan():
    """The shipped demo config: digits_cnn and the whole audit's hashes."""
    return build_plan(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), base=REPO)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, demo_plan):
    """digits_cnn's report and the summary, through `saferisk report --config` (as the workflow
    renders them: the audit hash, the model's subset, the resolved config), HTML pages too."""
    root = tmp_path_factory.mktemp("prov")
    results = fabricate_results("digits_cnn", [("robustness", "inf"), ("robustness", "2")], 24,
                                witness_root=root / "w", model_sha256=CNN_SHA, max_radius=0.3)
    parquet, _ = write_tables(table_from_results(results), root / "tables")
    (root / "m.json").write_text(json.dumps(manifest("digits_cnn", CNN_SHA)))
    (root / "criteria.json").write_text(json.dumps({"criteria": CRITERIA}))
    (root / "prov.json").write_text(json.dumps({"audit_date": AUDIT_DATE, "git": {"commit": "ab" * 20, "dirty": False}}))
    common = ["report", "--table", str(parquet), "--manifest", str(root / "m.json"), "--criteria",
              str(root / "criteria.json"), "--provenance", str(root / "prov.json"),
              "--config", str(REPO / "config" / "config.yaml")]
    cwd = os.getcwd()
    os.chdir(REPO)  # the demo config's model sources resolve from the repository root
    try:
        assert main([*common, "--witnesses", str(root / "w"), "--out", str(root / "cnn.pdf"),
                     "--html", str(root / "cnn.html")]) == 0
        assert main([*common, "--summary", "--out", str(root / "summary.pdf"), "--html", str(root / "summary.html")]) == 0
    finally:
        os.chdir(cwd)
    return {"root": root, "table": read_table(parquet), "cnn": root / "cnn.pdf", "summary": root / "summary.pdf"}


def test_audit_config_hash_is_the_same_in_every_report(rendered, demo_plan):
    """Every report states the whole config's SHA-256; the model report adds its subset's,
    and the summary lists that same subset hash for the model."""
    audit_hash, subset = demo_plan.config_sha256(), demo_plan.config_sha256("digits_cnn")
    assert audit_hash != subset
    cnn, summary = squashed(pdf_text(rendered["cnn"])), squashed(pdf_text(rendered["summary"]))
    for text in (cnn, summary):
        assert f"AuditconfigSHA-256{audit_hash}" in text  # on the cover
        assert f"auditconfigSHA-256{audit_hash}" in text  # in the provenance table
    assert f"ConfigsubsetSHA-256{subset}" in cnn and f"this model'sconfigsubsetSHA-256{subset}".replace(" ", "") in cnn
    assert f"configsubsetSHA-256ofdigits_cnn{subset}" in summary
    # the attached config is exactly the text the hash is taken over
    attached = PdfReader(rendered["cnn"]).attachments["config-digits_cnn.json"][0]
    assert hashlib.sha256(attached).hexdigest() == subset
    assert hashlib.sha256(PdfReader(rendered["summary"]).attachments["audit-config.json"][0]).hexdigest() == audit_hash


def test_resolved_config_is_shown_as_yaml_not_dotted_keys(rendered, demo_plan):
    text = pdf_text(rendered["cnn"])
    assert "Appendix: resolved configuration" in text
    assert "max_radius: 0.3" in text and "work_budget: 400" in text and "method: crown" in text
    assert "properties.robustness" not in text and "versions.torch" not in text and "source.sha256" not in text
    summary = pdf_text(rendered["summary"])
    for section in ("Models", "Input sets", "Properties", "Criteria", "Sharding", "Seeds"):
        assert f" {section} " in summary, section
    assert "regression_net:" in summary and "regression_net:" not in text  # the model report: its own subset
    assert yaml_text({"b": [1, 2], "a": {"c": None}}) == "a:\n  c: null\nb: [1, 2]"
    shared = {"mode": "fast"}  # one object under two keys: written out twice, no YAML alias
    assert yaml_text({"p": {"search": shared}, "q": {"search": shared}}) == yaml_text(
        {"p": {"search": {"mode": "fast"}}, "q": {"search": {"mode": "fast"}}})


def test_git_commit_on_cover_and_in_provenance(rendered):
    for pdf in (rendered["cnn"], rendered["summary"]):
        text = pdf_text(pdf)
        assert f"Git commit {'ab' * 20} · working tree clean" in text


def test_git_state_without_a_checkout_with_one_and_without_git(tmp_path, monkeypatch):
    assert git_state(tmp_path).as_dict() == {"commit": "not a git checkout"}
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()

    def run(*args):
        return subprocess.run([git, "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    run("init", "-q")
    (repo / "a.txt").write_text("1")
    run("add", "a.txt")
    run("commit", "-q", "-m", "one")
    head = run("rev-parse", "HEAD")
    (repo / "sub").mkdir()
    assert git_state(repo / "sub").as_dict() == {"commit": head, "dirty": False}
    (repo / "untracked.txt").write_text("x")  # untracked files do not make it dirty
    assert git_state(repo).dirty is False
    (repo / "a.txt").write_text("2")
    assert git_state(repo).as_dict() == {"commit": head, "dirty": True}
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no git executable: the files name the commit
    assert git_state(repo).as_dict() == {"commit": head, "dirty": "unknown (git not installed)"}


def test_run_metadata_names_the_commit_and_no_absolute_path(tmp_path):
    path = tmp_path / "run-metadata.json"
    write_run_metadata(str(path), {"plan": "1 model"}, source_dir=REPO)
    meta = json.loads(path.read_text())
    assert re.fullmatch(r"[0-9a-f]{40}|not a git checkout", meta["git"]["commit"])
    assert "workdir" not in meta and str(tmp_path) not in path.read_text() and str(REPO) not in path.read_text()


def test_document_id_on_the_cover_and_in_every_footer(rendered):
    table = rendered["table"]
    rows = table.loc[table["model"] == "digits_cnn"]
    provenance_hash = squashed(pdf_text(rendered["cnn"])).split("AuditconfigSHA-256")[1][:64]
    expected = document_id(table_csv(rows), provenance_hash, [CNN_SHA])
    assert re.fullmatch(r"SR-[0-9A-F]{12}", expected)
    reader = PdfReader(rendered["cnn"])
    assert f"Document ID {expected}" in " ".join(reader.pages[0].extract_text().split())
    for page in reader.pages:
        assert expected in page.extract_text(), "footer"
    # another table (one radius changed) gives another ID
    changed = rows.copy()
    changed.loc[changed.index[0], "radius_estimate"] = 0.123
    assert document_id(table_csv(changed), provenance_hash, [CNN_SHA]) != expected
    summary_reader = PdfReader(rendered["summary"])
    summary_id = re.search(r"Document ID (SR-[0-9A-F]{12})", " ".join(summary_reader.pages[0].extract_text().split()))
    assert summary_id and all(summary_id.group(1) in p.extract_text() for p in summary_reader.pages)


def test_approval_block_and_speed_statement(rendered):
    for pdf in (rendered["cnn"], rendered["summary"]):
        last = " ".join(PdfReader(pdf).pages[-1].extract_text().split())
        assert "Approval" in last
        for word in ("Prepared by", "Reviewed by", "Approved by", "name", "function", "date", "signature"):
            assert word in last, word
        assert "No certification was ended by the wall-clock cap" in pdf_text(pdf)


def test_a_clock_capped_certification_names_the_verdicts_that_could_change(rendered):
    table = rendered["table"]
    rows = table.loc[table["model"] == "digits_cnn"].copy()
    summary = summarize(rows, CRITERIA, models=["digits_cnn"])
    assert speed_dependence(rows, summary, ["digits_cnn"])["n_capped"] == 0
    first = rows.index[(rows["property"] == "robustness") & (rows["norm"] == "inf")][0]
    rows.loc[first, "extra"] = json.dumps({"certify_clock_capped": True})
    statement = speed_dependence(rows, summary, ["digits_cnn"])
    assert statement["n_capped"] == 1 and statement["groups"] == ["robustness-inf (1 input)"]
    assert statement["criteria"] == [v.scope for v in summary.criterion_verdicts]
    assert "could change on another machine" in statement["text"]
    other = rows.index[(rows["property"] == "robustness") & (rows["norm"] == "2")][0]
    rows.loc[first, "extra"], rows.loc[other, "extra"] = "{}", json.dumps({"certify_clock_capped": True})
    assert "no verdict rests on them" in speed_dependence(rows, summary, ["digits_cnn"])["text"]


def catalog_attachments(path) -> tuple[list, list[str]]:
    reader = PdfReader(path)
    root = reader.trailer["/Root"]
    af = [ref.idnum for ref in root["/AF"]]
    names = root["/Names"]["/EmbeddedFiles"]["/Names"]
    return af, [str(n) for n in names[0::2]]


def test_each_attachment_listed_once_and_the_witnesses_recheck(rendered):
    af, names = catalog_attachments(rendered["cnn"])
    assert names == ["audit-digits_cnn.csv", "witnesses-digits_cnn.npz", "config-digits_cnn.json"]
    assert len(af) == len(set(af)) == len(names)
    af, names = catalog_attachments(rendered["summary"])
    assert names == ["audit.csv", "audit-config.json"] and len(af) == len(set(af)) == 2
    data = PdfReader(rendered["cnn"]).attachments["witnesses-digits_cnn.npz"][0]
    table = rendered["table"]
    rows = table.loc[(table["model"] == "digits_cnn") & table["witness_ref"].astype(bool)]
    assert len(rows) > 5
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert len(npz.files) == 2 * len(rows)
        for row in rows.itertuples():
            x0, witness = npz[f"{row.witness_ref}/x0"], npz[f"{row.witness_ref}/witness"]
            order = np.inf if row.norm == "inf" else float(row.norm)
            # the fabricated witnesses lie at the L-inf radius_upper (tests/synthetic.py)
            assert np.linalg.norm(witness - x0, np.inf) == pytest.approx(row.radius_upper, rel=1e-9), row.witness_ref
            assert np.linalg.norm(witness - x0, order) >= row.radius_upper * (1 - 1e-9)


def test_npz_bytes_are_deterministic():
    arrays = {"b/x0": np.arange(3.0), "a/witness": np.ones(2)}
    first = npz_bytes(arrays)
    assert first == npz_bytes(dict(reversed(list(arrays.items()))))
    with np.load(io.BytesIO(first), allow_pickle=False) as npz:
        assert npz.files == ["a/witness", "b/x0"] and npz["b/x0"].tolist() == [0.0, 1.0, 2.0]


def test_tagged_and_still_pdf_a3u(rendered):
    for pdf in (rendered["cnn"], rendered["summary"]):
        reader = PdfReader(pdf)
        root = reader.trailer["/Root"]
        assert bool(root["/MarkInfo"]["/Marked"]) is True  # a pypdf BooleanObject
        tree = root["/StructTreeRoot"].get_object()
        assert tree["/Type"] == "/StructTreeRoot" and "/K" in tree
        xmp = root["/Metadata"].get_object().get_data().decode()
        assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="U"' in xmp
        assert root["/Lang"]


def test_html_report_is_self_contained_sortable_and_deterministic(rendered, tmp_path):
    page = (rendered["root"] / "cnn.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<script>" in page
    assert 'rel="stylesheet"' not in page and not re.search(r'\s(?:src|href)="(?!data:|#)', page)
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/') >= 2  # plots and witness images inline
    assert "aria-sort" in page  # the sorting script
    doc = re.search(r"SR-[0-9A-F]{12}", pdf_text(rendered["cnn"])).group(0)
    assert doc in page and "Prepared by" in page and "Appendix: resolved configuration" in page
    # same inputs, same bytes (rendered again through the library)
    table = rendered["table"]
    summary = summarize(table, CRITERIA, models=["digits_cnn"])
    provenance = {"audit_date": AUDIT_DATE}
    outs = [render_model_report(table, summary, manifest("digits_cnn", CNN_SHA), provenance, tmp_path / f"{i}.pdf",
                                witnesses_root=rendered["root"] / "w", out_html=tmp_path / f"{i}.html") for i in (1, 2)]
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert (tmp_path / "1.html").read_bytes() == (tmp_path / "2.html").read_bytes()
    render_summary_report(table, summary, {"digits_cnn": manifest("digits_cnn", CNN_SHA)}, provenance,
                          tmp_path / "s.pdf", out_html=tmp_path / "s.html")
    assert "<script>" in (tmp_path / "s.html").read_text()


def test_no_absolute_path_in_the_report(rendered, tmp_path, monkeypatch):
    """A manifest or config naming an absolute path inside the audit directory is shown relative."""
    monkeypatch.chdir(tmp_path)
    table = rendered["table"]
    summary = summarize(table, CRITERIA, models=["digits_cnn"])
    absolute = manifest("digits_cnn", CNN_SHA, source={"sha256": "5e" * 32, "path": str(tmp_path / "models/net.onnx")})
    config = {"model": {"source": str(tmp_path / "models" / "net.onnx")}, "seeds": {"search": 0}}
    out = render_model_report(table, summary, absolute, {"audit_date": AUDIT_DATE, "model_source": str(tmp_path / "x.pt")},
                              tmp_path / "r.pdf", witnesses_root=rendered["root"] / "w", audit_config=config,
                              out_html=tmp_path / "r.html")
    text = squashed(pdf_text(out))
    assert "models/net.onnx" in text and "x.pt" in text
    assert squashed(str(tmp_path)) not in text and str(tmp_path) not in (tmp_path / "r.html").read_text()
    for pdf in (rendered["cnn"], rendered["summary"]):
        assert str(rendered["root"]) not in pdf_text(pdf) and str(REPO) not in pdf_text(pdf)


def test_witness_from_the_pdf_alone_violates_the_property_on_the_model(tmp_path):
    """Real radii on the demo MLP: each witness taken out of the PDF changes the model's
    decision (re-run with onnxruntime) and lies at radius_upper from its input."""
    ort = pytest.importorskip("onnxruntime")
    from saferisk.data.domain import Domain
    from saferisk.models.load import load_model
    from saferisk.properties import Robustness
    from saferisk.radius import compute_radii
    from saferisk.search import SearchConfig

    onnx_path = DEMO / "digits_mlp.onnx"
    model = load_model(onnx_path, name="digits_mlp")
    with np.load(DEMO / "digits_test.npz") as data:
        X, y = data["X"][:4], data["y"][:4]
    results = compute_radii(model, X, Robustness(), "inf", 0.3, Domain.scalar(0.0, 1.0, 64), labels=y,
                            search=SearchConfig(mode="fast", max_iterations=10, n_starts=1, n_random=32,
                                                gradient_steps=5, shrink_steps=2, budget=2000),
                            certify=False, seed=0, witness_path=tmp_path / "w" / "r.npz", witness_ref="r.npz")
    for r in results:
        r.input_set = "digits"
    table = table_from_results(results)
    rows = table.loc[table["witness_ref"].astype(bool) & (table["status"] == "ok")]
    if rows.empty:
        pytest.skip("the search found no witness on these inputs")
    out = render_model_report(table, summarize(table), manifest("digits_mlp", model.sha256 or "00"),
                              {"audit_date": AUDIT_DATE}, tmp_path / "m.pdf", witnesses_root=tmp_path / "w")
    data = PdfReader(out).attachments["witnesses-digits_mlp.npz"][0]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in feed.shape]
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for row in rows.itertuples():
            x0, witness = npz[f"{row.witness_ref}/x0"], npz[f"{row.witness_ref}/witness"]
            assert np.abs(witness - x0).max() == pytest.approx(row.radius_upper, rel=1e-6, abs=1e-9)
            decide = [int(np.argmax(session.run(None, {feed.name: v.reshape(shape).astype(np.float32)})[0]))
                      for v in (x0, witness)]
            assert decide[0] != decide[1], row.input_id
