"""The user's own code an audit runs: the module of a weights-only model's `factory` and of a
`custom` property's `function` (both 'package.module:function'). The digest of the file that
defines it is a parameter of the jobs that run it (the export, the radius jobs), so editing that
file reruns them, like the stage digests of saferisk's own code (the modules it imports in turn
are not followed: keep the function's code in its file, or touch that file after editing them).

Found without importing anything (the Snakefile parse stays light): the first
`package/module.py` or `package/module/__init__.py` on sys.path, then in the working directory
(where the export's factory loader looks last)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Sequence

NOT_FOUND = "source not found"  # the digest of a module without a source file on the path (compiled, namespace)


def module_file(module: str, search_path: Sequence[str] | None = None) -> Path | None:
    """The source file of `module` (dotted name) on `search_path` (default: sys.path, then the
    working directory), or None."""
    parts = [p for p in module.split(".") if p]
    if not parts:
        return None
    for entry in [*(sys.path if search_path is None else search_path), *([os.getcwd()] if search_path is None else [])]:
        base = Path(entry or os.getcwd()).joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def code_digest(reference: str | None, search_path: Sequence[str] | None = None) -> str | None:
    """sha256 (16 hex) of the file defining 'module:function' (None: no reference; NOT_FOUND
    where the module has no source file on the path)."""
    if not reference or not isinstance(reference, str):
        return None
    path = module_file(reference.partition(":")[0].strip(), search_path)
    if path is None:
        return NOT_FOUND
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
