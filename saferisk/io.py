"""Atomic, deterministic file writes: a failed run never leaves a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

#: the zip entries' timestamp in saferisk's .npz files: the earliest a zip can hold, never the clock
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) for a temporary file beside `path`, then rename it into place.

    A disk that refuses the write (read-only, full, no permission) is a WriteError naming
    `path`; the temporary file is removed, so nothing half-written is ever left under `path`."""
    from saferisk.errors import WriteError

    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from colleagues
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _remove(tmp)
        raise


def check_writable(root: str | os.PathLike) -> None:
    """WriteError naming the first directory under `root` (itself included) where no file can be
    created: read-only or full disks found before any job starts, in one line."""
    from saferisk.errors import WriteError

    root = Path(root)
    if not root.exists():
        return
    for directory, _dirs, _files in os.walk(root):
        try:
            fd, probe = tempfile.mkstemp(prefix=".saferisk-write-check.", dir=directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise WriteError(f"cannot write {directory}: {exc.strerror or exc}") from None


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, _write)


def dumps_json(obj: Any) -> str:
    """Sorted, indented JSON with a trailing newline (NaN/inf are refused: use None)."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def npz_bytes(arrays: Iterable[tuple[str, Any]]) -> bytes:
    """An uncompressed .npz (np.load reads it, allow_pickle=False) of (name, array) pairs in the
    given order, with fixed zip timestamps and attributes: the same arrays give the same bytes,
    whenever and wherever written."""
    import io
    import zipfile

    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays:
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.create_system, info.external_attr = 3, 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON (non-JSON values as str): the text a config SHA-256 is taken over
    (attached to the reports, so the hash can be checked)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, dumps_json(obj).encode())


def sha256_file(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
