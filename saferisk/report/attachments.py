"""What a report PDF carries besides its pages: the attached files (the evidence table, the
witness arrays, the resolved config) and the document ID derived from their content.

Every attachment is bytes that depend on the audit only: the witness archive an .npz with
fixed timestamps (saferisk.io.npz_bytes), the config the canonical JSON its
SHA-256 is taken over (saferisk.io.canonical_json), so the hash can be
checked from the PDF alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

import saferisk.io
from saferisk.io import canonical_json
from saferisk.witness_file import load_witness, witness_key, x0_key

@dataclass(frozen=True)
class ReportAttachment:
    """One file embedded in a report PDF (a PDF/A-3 associated file)."""

    name: str
    description: str
    data: bytes
    mime_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def view(self) -> dict:
        """What the report lists about it."""
        size = len(self.data)
        size_text = f"{size:,} bytes" if size < 10_000 else f"{size / 1024:,.1f} KiB"
        return {"name": self.name, "description": self.description, "size": size_text, "sha256": self.sha256}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz of `arrays` with the keys in sorted order (saferisk.io.npz_bytes: fixed zip
    timestamps): the same arrays give the same bytes, whatever the dict's order."""
    return saferisk.io.npz_bytes(sorted(arrays.items()))


@dataclass(frozen=True)
class WitnessArchive:
    """The witness arrays of a report's rows: '<witness_ref>/x0' and '<witness_ref>/witness'."""

    data: bytes
    n_witnesses: int
    missing: tuple[str, ...]  # witness_ref values whose file or arrays were not found


def witness_archive(rows: pd.DataFrame, witnesses_root) -> WitnessArchive | None:
    """Every witness the rows reference (column witness_ref, relative to `witnesses_root`) as
    flat float64 arrays keyed by the row's witness_ref, so a row of the attached table finds
    its arrays by its own witness_ref. None when the rows reference none."""
    refs = sorted({str(r) for r in rows["witness_ref"] if isinstance(r, str) and r})
    if not refs or witnesses_root is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    missing = []
    for ref in refs:
        try:
            x0, witness = load_witness(witnesses_root, ref)
        except (FileNotFoundError, KeyError):
            missing.append(ref)
            continue
        arrays[x0_key(ref)], arrays[witness_key(ref)] = x0, witness
    if not arrays:
        return WitnessArchive(b"", 0, tuple(missing))
    return WitnessArchive(npz_bytes(arrays), len(arrays) // 2, tuple(missing))


def config_attachment(name: str, config: dict, what: str) -> ReportAttachment:
    """The resolved config as the canonical JSON its SHA-256 is taken over."""
    return ReportAttachment(name, f"{what}: the resolved configuration as the sorted JSON whose SHA-256 "
                            "the report states", canonical_json(config).encode(), "application/json")


def document_id(table_csv_text: str, config_sha256: str | None, model_hashes: Iterable[str]) -> str:
    """'SR-' and 12 hex digits of the SHA-256 over the attached table, the config hash and
    the model hashes: the same evidence gives the same ID, any change a different one."""
    h = hashlib.sha256(table_csv_text.encode())
    for part in (config_sha256 or "", *sorted(model_hashes)):
        h.update(b"\0" + str(part).encode())
    return "SR-" + h.hexdigest()[:12].upper()
