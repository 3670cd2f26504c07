"""Digests of the user's code (a model's factory, a custom property's function): found on the
path without importing it, changing with the file's content."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy

import saferisk.norms
from saferisk.config.user_code import NOT_FOUND, code_digest, is_user_file, module_file, user_files
from saferisk.io import sha256_file


def test_the_digest_follows_the_file_that_defines_the_function(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    source = tmp_path / "pkg" / "nets.py"
    source.write_text("raise SystemExit('never imported')\n")
    path = [str(tmp_path)]
    assert module_file("pkg.nets", path) == source and module_file("pkg", path) == tmp_path / "pkg" / "__init__.py"
    first = code_digest("pkg.nets:build", path)
    assert first == code_digest("pkg.nets:other", path)  # the file, whichever function
    source.write_text("raise SystemExit('never imported')\n# edited\n")
    assert code_digest("pkg.nets:build", path) != first
    assert code_digest(None, path) is None and code_digest("", path) is None
    assert code_digest("missing.module:f", path) == NOT_FOUND


def test_the_first_file_on_the_path_wins(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "nets.py").write_text(f"# {folder}\n")
    assert module_file("nets", [str(tmp_path / "b"), str(tmp_path / "a")]) == tmp_path / "b" / "nets.py"


def test_python_s_order_a_package_before_a_module_of_the_same_name(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "__init__.py").write_text("# the package: what `import nets` runs\n")
    (tmp_path / "nets.py").write_text("# shadowed by the package\n")
    assert module_file("nets", [str(tmp_path)]) == tmp_path / "nets" / "__init__.py"
    assert module_file("nets..x", [str(tmp_path)]) is None and module_file("", [str(tmp_path)]) is None


def _tree(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_digest_follows_the_users_modules_the_file_imports(tmp_path):
    """Absolute, `from` and relative imports, also inside functions, into the user's modules (each
    edit changes the digest); not into the standard library, installed distributions or saferisk;
    import cycles end."""
    _tree(tmp_path, {
        "nets.py": "import math\nimport numpy\nimport saferisk.norms\nfrom models import blocks\n"
                   "def build():\n    from helpers.widths import WIDTH\n    return WIDTH\n",
        "models/__init__.py": "",
        "models/blocks.py": "from . import layers\nfrom .layers import *\nimport nets  # a cycle\n",
        "models/layers.py": "from ..outside import x  # beyond the top-level package: skipped\n",
        "helpers/__init__.py": "# runs when helpers.widths is imported\n",
        "helpers/widths.py": "WIDTH = 16\n",
        "unrelated.py": "# imported by nobody\n",
    })
    path = [str(tmp_path)]
    names = [name for name, _ in user_files("nets", path)]
    assert names[0] == "nets"
    assert set(names) == {"nets", "models", "models.blocks", "models.layers", "helpers", "helpers.widths"}
    assert all(is_user_file(file) for _, file in user_files("nets", path))
    assert not is_user_file(Path(saferisk.norms.__file__)) and not is_user_file(Path(numpy.__file__))
    assert not is_user_file(Path(math.__file__ if hasattr(math, "__file__") else json.__file__))
    digests = {code_digest("nets:build", path)}
    for edited in ("models/layers.py", "helpers/__init__.py", "helpers/widths.py", "models/blocks.py"):
        (tmp_path / edited).write_text((tmp_path / edited).read_text() + "# edited\n")
        digests.add(code_digest("nets:build", path))
    assert len(digests) == 5  # each edit changed it
    (tmp_path / "unrelated.py").write_text("# edited\n")
    assert code_digest("nets:build", path) in digests  # not imported: no change


def test_a_file_without_user_imports_keeps_its_own_digest(tmp_path):
    """(an audit whose factory imports only installed code keeps the digest it had)"""
    _tree(tmp_path, {"nets.py": "import torch\nfrom saferisk.demo.nets import digits_mlp\n"})
    assert code_digest("nets:f", [str(tmp_path)]) == sha256_file(tmp_path / "nets.py")[:16]


def test_a_user_file_that_does_not_parse_is_digested_without_its_imports(tmp_path):
    _tree(tmp_path, {"nets.py": "import helper\n", "helper.py": "def broken(:\n"})
    first = code_digest("nets:f", [str(tmp_path)])
    assert [name for name, _ in user_files("nets", [str(tmp_path)])] == ["nets", "helper"]
    (tmp_path / "helper.py").write_text("def broken(:\n# edited\n")
    assert code_digest("nets:f", [str(tmp_path)]) != first
