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
