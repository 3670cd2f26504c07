"""Modules imported on first use: `torch = lazy_module("torch")` costs nothing until an attribute
is read, then imports the module and keeps each attribute read (a later read finds it in the
proxy's own namespace: ~30 ns more than on the module itself, measured; nothing on the scale of a
tensor operation).
For the modules the workflow's config checks and the aggregation and report jobs import but
rarely compute with (the properties): a Snakemake run parses its Snakefile, and every job starts
a Python, without paying torch's import (~2 s) where nothing needs it.

The proxy is not put in sys.modules: libraries that look there to ask "is torch loaded?"
(matplotlib does) must not load it by asking."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable


class LazyModule(types.ModuleType):
    """Stands for the module `__name__`; the first read of a missing attribute imports it."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # (copy, pickle and inspect probe dunders: no import for them)
            raise AttributeError(attr)
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)
        return value


def lazy_module(name: str) -> types.ModuleType:
    """sys.modules[name] when imported already, else a `LazyModule` for it."""
    return sys.modules.get(name) or LazyModule(name)


def lazy_package(package: str, exports: dict[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) of a package whose names load on first use (PEP 562):
    `exports` maps each name to the submodule that defines it; any other name that is a
    submodule (`package.<module>` after `import package`) is imported then; `namespace` is the
    package's globals(), for dir()."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":  # (a missing dependency of the submodule: its own error)
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__

