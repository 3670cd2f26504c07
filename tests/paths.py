"""Paths the tests share: the repository root, its demo files, and ../shared beside it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "saferisk" / "demo"
SHARED = REPO.parent / "shared"
