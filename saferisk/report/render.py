"""Jinja2 (StrictUndefined, autoescape) + WeasyPrint: HTML templates -> archival PDF, and
the same HTML as a self-contained interactive page.

Strict by construction: an undefined template variable raises jinja2.UndefinedError, and a
missing image or stylesheet raises ReportError (WeasyPrint's URLFetcher(fail_on_errors=True)
turns failed fetches into FatalURLFetchingError, which is caught and re-raised here). The PDF
is PDF/A-3u and tagged (a structure tree for screen readers) with its evidence files attached,
each listed once; its dates come from the audit (never the clock), so identical inputs give
byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import jinja2
import pydyf
import weasyprint
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from saferisk.errors import SaferiskError
from saferisk.io import atomic_write_bytes

if TYPE_CHECKING:
    from saferisk.report.attachments import ReportAttachment

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "reports"
PDF_VARIANT = "pdf/a-3u"


class ReportError(SaferiskError):
    """A report cannot be rendered (missing template asset, bad audit date, ...)."""


def fmt_number(value, digits: int = 4) -> str:
    """Compact number: 4 significant digits; None/NaN -> em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):.{digits}g}"


def fmt_percent(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{100 * float(value):.1f}%"
    return "0.0%" if text == "-0.0%" else text  # a rounding residue below zero is no negative share


def fmt_seconds(value) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def make_environment(templates_dir: str | Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=fmt_number, pct=fmt_percent, secs=fmt_seconds)
    return env


def parse_audit_date(value) -> dt.datetime:
    """The audit date (ISO 8601 date or date-time; naive means UTC) as an aware datetime."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ReportError(f"provenance 'audit_date' {value!r} is not an ISO 8601 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).replace(microsecond=0)


def render_html(templates_dir: str | Path, template: str, context: dict) -> str:
    try:
        return make_environment(templates_dir).get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise ReportError(f"report template {exc.name!r} not found in {templates_dir}") from None


def _dedupe_associated_files(document, pdf) -> None:
    """WeasyPrint's PDF/A-3 step lists each attachment twice in the catalog's /AF (once from
    the EmbeddedFiles name tree, once from its file specification): keep one entry each. A
    finisher runs after that step, before the file is written."""
    files = pdf.catalog.get("AF")
    if files:
        pdf.catalog["AF"] = pydyf.Array(dict.fromkeys(files))


def write_pdf(html: str, out_pdf: str | Path, base_dir: str | Path, audit_date: dt.datetime,
              attachments: Sequence[ReportAttachment] = ()) -> Path:
    """Render HTML to a tagged PDF/A-3u file atomically, `attachments` embedded as associated
    files (relationship Data)."""
    base_dir = Path(base_dir).resolve()
    fetcher = URLFetcher(fail_on_errors=True, allowed_protocols=("file", "data"))
    files = [weasyprint.Attachment(file_obj=io.BytesIO(a.data), name=a.name, description=a.description,
                                   created=audit_date, modified=audit_date, relationship="Data",
                                   url_fetcher=fetcher)
             for a in attachments]
    try:
        document = weasyprint.HTML(string=html, base_url=base_dir.as_uri() + "/", url_fetcher=fetcher)
        pdf = document.write_pdf(pdf_variant=PDF_VARIANT, pdf_tags=True, attachments=files, uncompressed_pdf=False,
                                 finisher=_dedupe_associated_files)
    except FatalURLFetchingError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ReportError(f"report asset missing ({exc}{cause}); templates dir {base_dir}") from None
    out_pdf = Path(out_pdf)
    atomic_write_bytes(out_pdf, pdf)
    return out_pdf


#: click a column heading of a data table to sort by it (numbers as numbers; again: reverse)
SORT_SCRIPT = """
document.querySelectorAll("table.data").forEach(function (table) {
  var head = table.tHead, body = table.tBodies[0];
  if (!head || !body) return;
  var width = head.rows[0].cells.length;
  var rows = Array.prototype.slice.call(body.rows);
  if (rows.some(function (r) { return r.cells.length !== width; })) return;
  Array.prototype.forEach.call(head.rows[0].cells, function (th, col) {
    th.classList.add("sortable");
    th.title = "sort by this column";
    th.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(head.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "ascending" : "descending");
      var key = function (r) {
        var t = r.cells[col].textContent.trim(), n = parseFloat(t.replace(/[,%≥ ]/g, ""));
        return isNaN(n) ? t.toLowerCase() : n;
      };
      Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b), c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return down ? c : -c;
      }).forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def interactive_html(html: str, templates_dir: str | Path) -> str:
    """The report's HTML as one self-contained page: its stylesheets inlined (the plots and
    witness images are data: URIs already), a script that sorts tables, nothing fetched."""
    templates_dir = Path(templates_dir)

    def inline(match: re.Match) -> str:
        path = templates_dir / match.group(1)
        if not path.is_file():
            raise ReportError(f"report asset missing (stylesheet {match.group(1)}); templates dir {templates_dir}")
        return "<style>\n" + path.read_text(encoding="utf-8").replace("</", "<\\/") + "</style>"

    page = re.sub(r'<link rel="stylesheet" href="([^":]+)">', inline, html)
    fetched = re.search(r'\s(?:src|href)="(?!data:|#)([^"]*)"', page)
    if fetched:
        raise ReportError(f"the HTML report would fetch {fetched.group(1)!r}: only data: URIs and #anchors "
                          "are self-contained")
    return page.replace("</body>", f"<script>{SORT_SCRIPT}</script>\n</body>", 1)


def write_html(html: str, out_html: str | Path, templates_dir: str | Path) -> Path:
    """The interactive HTML report, written atomically (the same context gives the same bytes)."""
    out_html = Path(out_html)
    atomic_write_bytes(out_html, interactive_html(html, templates_dir).encode("utf-8"))
    return out_html
