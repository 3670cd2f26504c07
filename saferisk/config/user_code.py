"""The user's own code an audit runs: the module of a weights-only model's `factory` and of a
`custom` property's `function` (both 'package.module:function'). The digest of the file that
defines it is a parameter of the jobs that run it (the export, the radius jobs), so editing that
file reruns them, like the stage digests of saferisk's own code (the modules it imports in turn
are not followed: keep the function's code in its file, or touch that file after editing them).

Found without importing anything (the Snakefile parse stays light), in Python's own order
(`importlib.machinery.PathFinder`: a package before a module of the same name, extension
modules too): on sys.path, then in the working directory (where the export's factory loader
looks last); a top-level name no path entry holds is asked of the installed finders (editable
installs). A module without a file (a namespace package) gets NOT_FOUND: editing it reruns nothing."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from saferisk.io import sha256_file

NOT_FOUND = "source not found"  # the digest of a module without a source file on the path (namespace packages)


def module_file(module: str, search_path: Sequence[str] | None = None) -> Path | None:
    """The file Python would load for `module` (dotted name) from `search_path` (default:
    sys.path, then the working directory), found without importing it; None where there is none."""
    parts = [p.strip() for p in module.split(".")]
    if not parts or not all(parts):
        return None
    locations = list(search_path) if search_path is not None else [*sys.path, os.getcwd()]
    spec = None
    for depth, part in enumerate(parts):
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, locations)
            if spec is None and depth == 0 and search_path is None:
                spec = importlib.util.find_spec(part)  # (a top-level name: no import; editable-install finders)
        except (ImportError, ValueError, OSError):
            return None
        if spec is None:
            return None
        if depth < len(parts) - 1:
            locations = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and os.path.isfile(origin) else None


def code_digest(reference: str | None, search_path: Sequence[str] | None = None) -> str | None:
    """sha256 (16 hex) of the file defining 'module:function' (None: no reference; NOT_FOUND
    where the module has no file on the path)."""
    if not reference or not isinstance(reference, str):
        return None
    path = module_file(reference.partition(":")[0], search_path)
    if path is None:
        return NOT_FOUND
    stat = path.stat()
    return _file_digest(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    """(cached by modification time and size: a parse asks once per job of the same model or property)"""
    return sha256_file(path)[:16]
