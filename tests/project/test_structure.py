"""The code's shape, checked: no import cycle, no import of a higher layer, no function over
80 lines, one definition of each concept that used to be written twice."""

from __future__ import annotations

from tests.paths import REPO
import ast
import re
from pathlib import Path

import pytest

PACKAGE = REPO / "saferisk"

#: Layers, lowest first (docs/developer-guide.md, "Layers"): a module imports its own layer or lower.
LAYERS = [
    ("saferisk", "saferisk.errors", "saferisk.io", "saferisk.layout", "saferisk.norms", "saferisk.result",
     "saferisk.witness_file"),
    ("saferisk.data", "saferisk.properties", "saferisk.demo"),
    ("saferisk.models",),
    ("saferisk.bounds", "saferisk.search"),
    ("saferisk.radius", "saferisk.verify"),
    ("saferisk.audit",),
    ("saferisk.report",),
    ("saferisk.config",),
    ("saferisk.steps",),
    ("saferisk.commands", "saferisk.cli", "saferisk.__main__"),
]
#: Within a layer, packages that must not import each other in this direction.
SAME_LAYER_FORBIDDEN = {("saferisk.data", "saferisk.properties"), ("saferisk.properties", "saferisk.data"),
                        ("saferisk.bounds", "saferisk.search"), ("saferisk.search", "saferisk.bounds"),
                        ("saferisk.radius", "saferisk.verify"), ("saferisk.verify", "saferisk.radius")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """saferisk modules imported anywhere in the file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("saferisk"):
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("saferisk")]
        for name in names:
            if name in modules:
                found.add(name)
                if isinstance(node, ast.ImportFrom) and name != node.module:
                    found.discard(node.module)  # `from pkg import module` imports the module
    return found


def _layer(module: str) -> tuple[int, str]:
    best = (-1, "")
    for index, members in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > len(best[1]):
                best = (index, member)
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if _layer(m)[0] < 0] == []


def test_no_module_imports_a_higher_layer(graph):
    wrong = []
    for module, targets in graph.items():
        (level, group) = _layer(module)
        for target in targets:
            (target_level, target_group) = _layer(target)
            if target_level > level or (group, target_group) in SAME_LAYER_FORBIDDEN:
                wrong.append(f"{module} (layer {level}) imports {target} (layer {target_level})")
    assert wrong == []


def test_no_import_cycle(graph):
    """Tarjan's strongly connected components over module imports (package __init__ re-exports
    included): every component has one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_function_over_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


ONE_DEFINITION = {
    # concept: a pattern that only its definition matches
    "device resolution": r"^def resolve_device\(",
    "audit date": r"^def audit_date\(",
    "criteria measured check": r"^def check_measured\(",
    "certify settings from a spec": r"^def certify_config\(",
    "algorithm hash": r"^def algorithm_hash\(",
    "results paths": r"^def radius_table\(",
    "witness file save": r"^def save_witnesses\(",
    "witness file load": r"^def load_witness\(",
    "npy reader": r"^class NpySource\(",
    "npz reader": r"^class NpzSource\(",
    "csv reader": r"^class CsvSource\(",
    "png reader": r"^class PngFolderSource\(",
    "box reader": r"^def read_box\(",
    "stratified selection": r"^def stratified_positions\(",
}


@pytest.mark.parametrize("concept", sorted(ONE_DEFINITION))
def test_one_definition(concept):
    pattern = re.compile(ONE_DEFINITION[concept], re.M)
    where = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py")) if pattern.search(p.read_text())]
    assert len(where) == 1, f"{concept}: defined in {where}"


def test_no_results_path_written_outside_the_layout():
    """Only saferisk/layout.py spells the results/ tree (docstrings and help texts may name it)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.search(r"(^|[^\w])results/(models|inputs|radii|tables|reports)", node.value) and "help" not in node.value:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.value[:60]!r}")
    workflow = REPO / "workflow"
    for path in sorted(workflow.rglob("*.smk")) + sorted(workflow.rglob("*.py")):
        for line in path.read_text().splitlines():
            if re.search(r"[\"']results/", line):
                offenders.append(f"{path.relative_to(workflow.parent)}: {line.strip()}")
    assert offenders == []


# What each Snakemake run parses (workflow/rules/common.smk) and the jobs that only read tables
# import without torch (~2 s per process): a dry run, a no-op rerun, and the aggregation and
# summary jobs of a nightly audit start in a fraction of that.
TORCH_FREE = """
import sys
from pathlib import Path
import yaml
import saferisk.audit.terminal, saferisk.config, saferisk.config.profile, saferisk.config.runtime
import saferisk.errors, saferisk.io, saferisk.steps.export, saferisk.steps.provenance
import saferisk.steps.inputs, saferisk.steps.tables, saferisk.steps.reports
from saferisk.config.runtime import radius_job_mem_mb
config = yaml.safe_load(Path("config/config.yaml").read_text())
plan = saferisk.config.build_plan(config, base=Path.cwd())
for spec in config["properties"].values():
    radius_job_mem_mb(spec)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_the_workflows_config_checks_and_table_jobs_import_no_torch():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", TORCH_FREE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout[-2000:]


def test_a_lazy_module_imports_on_its_first_attribute_and_stays_out_of_sys_modules():
    import subprocess
    import sys

    code = ("import sys\nfrom saferisk.lazy import lazy_module\n"
            "m = lazy_module('colorsys')\n"
            "assert 'colorsys' not in sys.modules, 'imported before use'\n"
            "assert m.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)\n"
            "assert 'colorsys' in sys.modules and 'rgb_to_hsv' in vars(m)\n"
            "assert lazy_module('colorsys') is sys.modules['colorsys']\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize("package", ["saferisk.search", "saferisk.bounds", "saferisk.models", "saferisk.config", "saferisk.audit"])
def test_lazy_packages_give_their_names_and_submodules(package):
    """`saferisk.search` and friends load their names on first use: each exported name and each
    submodule resolves as before, an unknown name is an AttributeError."""
    import importlib
    import pkgutil

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    for info in pkgutil.iter_modules(module.__path__):
        assert getattr(module, info.name).__name__ == f"{package}.{info.name}"
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name")
