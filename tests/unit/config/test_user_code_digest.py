"""Digests of the user's code (a model's factory, a custom property's function): found on the
path without importing it, changing with the file's content."""

from __future__ import annotations

from saferisk.config.user_code import NOT_FOUND, code_digest, module_file


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
