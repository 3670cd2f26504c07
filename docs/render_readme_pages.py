"""Render pages of an audit report to PNG for the README (needs poppler's pdftoppm).

    .venv/bin/python docs/render_readme_pages.py [PDF] [--pages 1 2 12 13] [--dpi 50] [--out docs/images]

PDF defaults to results/reports/<first model>.pdf (the first model report of the default
audit, in name order, i.e. not summary.pdf). Writes docs/images/report-page-<N>.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_pdf(reports_dir: Path) -> Path:
    reports = sorted(p for p in reports_dir.glob("*.pdf") if p.name != "summary.pdf")
    if not reports:
        sys.exit(f"no model report in {reports_dir}: run the default audit first (make audit)")
    return reports[0]


def render_pages(pdf: Path, pages: list[int], out_dir: Path, dpi: int = 50) -> list[Path]:
    """pdftoppm each page to out_dir/report-page-<N>.png; returns the paths."""
    if shutil.which("pdftoppm") is None:
        sys.exit("pdftoppm not found: install poppler-utils")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for page in pages:
        stem = out_dir / f"report-page-{page}"
        subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile",
                        str(pdf), str(stem)], check=True)
        written.append(stem.with_suffix(".png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pdf", nargs="?", type=Path, help="report PDF (default: first model report)")
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 2, 12, 13])
    parser.add_argument("--dpi", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    pdf = args.pdf or default_pdf(REPO / "results" / "reports")
    if not pdf.exists():
        sys.exit(f"{pdf} not found")
    for path in render_pages(pdf, args.pages, args.out, args.dpi):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
