"""Jinja2 (StrictUndefined, autoescape) + WeasyPrint: HTML templates -> archival PDF.

Strict by construction: an undefined template variable raises jinja2.UndefinedError, and a
missing image or stylesheet raises ReportError (WeasyPrint's URLFetcher(fail_on_errors=True)
turns failed fetches into FatalURLFetchingError, which is caught and re-raised here). The PDF
is PDF/A-3u with the tidy table attached; its dates come from the audit (never the clock),
so identical inputs give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import jinja2
import weasyprint
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from saferisk.errors import SaferiskError
from saferisk.io import atomic_write_bytes

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


def write_pdf(html: str, out_pdf: str | Path, base_dir: str | Path, audit_date: dt.datetime,
              attachments: list[tuple[str, str, str]] = ()) -> Path:
    """Render HTML to a PDF/A-3u file atomically. attachments: (name, description, text)."""
    base_dir = Path(base_dir).resolve()
    fetcher = URLFetcher(fail_on_errors=True, allowed_protocols=("file", "data"))
    files = [weasyprint.Attachment(string=text, name=name, description=description,
                                   created=audit_date, modified=audit_date, relationship="Data",
                                   url_fetcher=fetcher)
             for name, description, text in attachments]
    try:
        document = weasyprint.HTML(string=html, base_url=base_dir.as_uri() + "/", url_fetcher=fetcher)
        pdf = document.write_pdf(pdf_variant=PDF_VARIANT, attachments=files, uncompressed_pdf=False)
    except FatalURLFetchingError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ReportError(f"report asset missing ({exc}{cause}); templates dir {base_dir}") from None
    out_pdf = Path(out_pdf)
    atomic_write_bytes(out_pdf, pdf)
    return out_pdf
