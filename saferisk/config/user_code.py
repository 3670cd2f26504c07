"""The user's own code an audit runs: the module of a weights-only model's `factory` and of a
`custom` property's `function` (both 'package.module:function'), with the user's modules it
imports in turn. The digest of those files is a parameter of the jobs that run them (the export,
the radius jobs), so editing any of them reruns those jobs, like the stage digests of saferisk's
own code.

Found without importing anything (the Snakefile parse stays light), in Python's own order
(`importlib.machinery.PathFinder`: a package before a module of the same name, extension
modules too): on sys.path, then in the working directory (where the export's factory loader
looks last); a top-level name no path entry holds is asked of the installed finders (editable
installs). The imports are read from each file's syntax tree (`import a.b`, `from a import b`,
relative imports; also those inside functions or `try` blocks, whether they run or not) and
followed into every module whose file is the user's: not the standard library's, not an installed
distribution's (site-packages: a pinned environment, not the audit's code) and not saferisk's
(its own stage digests cover it). Modules imported by name at run time (`importlib.import_module`)
are not seen. A module without a file (a namespace package) gets NOT_FOUND: editing it reruns nothing."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
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
    """sha256 (16 hex) of the user's code behind 'module:function' (`user_files`): the file
    defining it alone, that file's digest; with the user's modules it imports, one digest of every
    (module, file digest) pair. None: no reference; NOT_FOUND where the module has no file on the path."""
    if not reference or not isinstance(reference, str):
        return None
    files = user_files(reference.partition(":")[0], search_path)
    if not files:
        return NOT_FOUND
    digests = [(name, _file_digest(path, *_stamp(path))) for name, path in files]
    if len(digests) == 1:
        return digests[0][1]
    h = hashlib.sha256()
    for name, digest in digests:
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()[:16]


def user_files(module: str, search_path: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """(module name, file) of `module` and of every user module it imports, directly or through
    other user modules (breadth first, each once; `is_user_file`), the module itself first;
    empty where `module` has no file. A package's submodule brings its parents' `__init__.py`."""
    first = module_file(module, search_path)
    if first is None:
        return []
    found = {module: first}
    queue = [module]
    while queue:
        name = queue.pop(0)
        path = found[name]
        for imported in _imports(name, path, path.name == "__init__.py", *_stamp(path)):
            if imported in found:
                continue
            target = module_file(imported, search_path)
            if target is not None and is_user_file(target) and target not in found.values():
                found[imported] = target
                queue.append(imported)
    return list(found.items())


def is_user_file(path: Path) -> bool:
    """A file of the user's code: outside the standard library, the installed distributions
    (site-packages) and saferisk itself."""
    resolved = path.resolve()
    return not any(resolved.is_relative_to(root) for root in _foreign_roots())


@lru_cache(maxsize=1)
def _foreign_roots() -> tuple[Path, ...]:
    """The folders whose modules are not the user's: the standard library, site-packages
    (the environment's and the user's), saferisk's own package."""
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(getattr(site, "getsitepackages", lambda: [])())
    roots.add(getattr(site, "getusersitepackages", lambda: None)())
    roots.add(str(Path(__file__).resolve().parent.parent))  # saferisk/
    return tuple(Path(root).resolve() for root in roots if root)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=None)
def _imports(module: str, path: Path, is_package: bool, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The modules the file of `module` imports, read from its syntax tree: `import a.b` gives
    a and a.b (importing a.b runs a's `__init__.py`), `from a import b` gives a and a.b (b may
    be a submodule), relative imports resolved against the module's package (a file that does
    not parse: none; its job reports the error). Cached by modification time and size."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return ()
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names += _with_parents(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue  # beyond the top-level package: Python raises, the job reports it
                base = package[:len(package) - (node.level - 1)]
            else:
                base = []
            parts = base + (node.module.split(".") if node.module else [])
            if not parts:
                continue
            names += _with_parents(parts)
            names += [".".join(parts + [alias.name]) for alias in node.names if alias.name != "*"]
    return tuple(dict.fromkeys(names))


def _with_parents(parts: list[str]) -> list[str]:
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    """(cached by modification time and size: a parse asks once per job of the same model or property)"""
    return sha256_file(path)[:16]
