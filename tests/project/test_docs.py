"""The documentation tells the truth about the repository.

- every `make` target and every `saferisk` subcommand (and its --options) named in the README
  and docs/ exists; every CLI subcommand is documented in the user guide;
- every relative link and image in README.md and docs/*.md points to an existing file (and an
  existing heading when it has a #fragment);
- the README's two commands are exactly what the Makefile and .ci/run implement;
- the README's performance block holds only the benchmarks' own numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from saferisk.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]  # (also run as a script: --sync-performance)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PERFORMANCE_FILE = ROOT / "benchmarks" / "results" / "README_performance.md"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_of(markdown: str) -> list[str]:
    """Lines of fenced code blocks and inline code spans, where commands are written."""
    fenced = [block.replace("\\\n", " ")  # join shell continuation lines
              for block in re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.S | re.M)]
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    lines = [line for block in fenced for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose)


COMMAND_START = r"(?:^|[\s;&|(])"


def make_targets() -> set[str]:
    targets = set()
    for line in _text(ROOT / "Makefile").splitlines():
        match = re.match(r"^([A-Za-z][\w.-]*)\s*:(?!=)", line)
        if match:
            targets.add(match.group(1))
    return targets


def subcommand_options() -> dict[str, set[str]]:
    """{subcommand: its long options} from the real argument parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {opt for action in p._actions for opt in action.option_strings}
            for name, p in sub.choices.items()}


def test_every_make_target_named_in_the_docs_exists():
    targets = make_targets()
    assert {"audit", "test", "bench", "install"} <= targets
    named = set()
    for doc in DOCS:
        for line in code_of(_text(doc)):
            for target in re.findall(COMMAND_START + r"make\s+([a-z][\w-]*)", line):
                named.add((doc.name, target))
    assert ("README.md", "audit") in named and ("README.md", "test") in named
    missing = sorted(f"{doc}: make {t}" for doc, t in named if t not in targets)
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"


def test_every_saferisk_subcommand_and_option_named_in_the_docs_exists():
    commands = subcommand_options()
    named, problems = set(), []
    for doc in DOCS:
        for line in code_of(_text(doc)):
            for match in re.finditer(COMMAND_START + r"(?:\S*bin/)?saferisk\s+([a-z][\w-]*)(?![\w.:/-])(.*)", line):
                command, rest = match.group(1), match.group(2)
                named.add(command)
                if command not in commands:
                    problems.append(f"{doc.name}: `saferisk {command}` is not a subcommand")
                    continue
                rest = re.split(r"[;|&#]", rest, maxsplit=1)[0]
                for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                    if option not in commands[command]:
                        problems.append(f"{doc.name}: `saferisk {command}` has no option {option}")
    assert not problems, "\n".join(problems)
    assert {"init", "validate-config"} <= named


def test_every_cli_subcommand_is_in_the_user_guide():
    guide = _text(ROOT / "docs" / "user-guide.md")
    undocumented = [c for c in subcommand_options() if not re.search(rf"^#+ .*`saferisk {c}", guide, re.M)]
    assert not undocumented, f"docs/user-guide.md has no section for: {undocumented}"


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    return {github_slug(h) for h in re.findall(r"^#+\s+(.*)$", prose, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_exist(doc):
    text = _text(doc)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`\n]+`", "", prose)
    broken = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(_text(path)):
            broken.append(f"{target}: no heading #{fragment} in {path.name}")
    assert not broken, f"{doc.name}: broken links: {broken}"


def readme_two_commands() -> list[str]:
    readme = _text(ROOT / "README.md")
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def recipe(target: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of a Makefile target."""
    lines = _text(ROOT / "Makefile").splitlines()
    for i, line in enumerate(lines):
        match = re.match(rf"^{re.escape(target)}\s*:(?!=)(.*)$", line)
        if match:
            body = []
            for next_line in lines[i + 1:]:
                if not next_line.startswith("\t"):
                    break
                body.append(next_line.strip().lstrip("@"))
            return match.group(1).split(), body
    raise AssertionError(f"Makefile has no target {target}")


def test_readme_two_commands_are_what_the_makefile_and_ci_run():
    assert readme_two_commands() == ["make audit", "make test"]
    ci = [line.strip() for line in _text(ROOT / ".ci" / "run").splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert ci[-1] == "make test", f".ci/run must end with the README's test command, got {ci[-1]!r}"
    for target, install, runs in (("audit", "install", "$(BIN)/snakemake"),
                                  ("test", "install-test", "$(BIN)/python -m pytest")):
        prerequisites, body = recipe(target)
        assert prerequisites == [install], f"make {target} must install first: {prerequisites}"
        assert body and body[0].startswith(runs), f"make {target} runs {body}"
    assert recipe("audit")[1][0] == "$(BIN)/snakemake", "the default audit is plain `snakemake`"
    install_prerequisites, install_body = recipe("install")
    assert "system-deps" in install_prerequisites
    # the audit installs what it needs and no more; the tests add their extras on top of it
    assert "test-system-deps" not in install_prerequisites
    audit_pip = [line for line in recipe("$(VENV)/.installed")[1] if "pip install -q -e" in line]
    assert audit_pip == ['$(BIN)/python -m pip install -q -e .'], audit_pip
    test_prerequisites, _ = recipe("install-test")
    assert {"install", "test-system-deps"} <= set(test_prerequisites)


def test_readme_lists_the_system_packages_the_makefile_installs():
    makefile = _text(ROOT / "Makefile")
    packages = [p for name in ("APT_PACKAGES", "TEST_APT_PACKAGES")
                for p in re.search(rf"^{name}\s*:=\s*(.*)$", makefile, re.M).group(1).split()]
    readme = _text(ROOT / "README.md")
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9][a-z0-9.+-]*)`", section))
    missing = [p for p in packages if p not in listed]
    assert not missing, f"README does not name the system packages {missing}"
    extras = re.search(r'pip install -q -e "\.\[([\w,]+)\]"', makefile).group(1)
    assert f'pip install -e ".[{extras}]"' in section


def rules_and_local_rules() -> tuple[set[str], set[str]]:
    """(every rule, the rules marked `localrule: True`) of the Snakefile and workflow/rules/*.smk
    (snakefmt-formatted: a rule's directives are indented below its `rule NAME:` line)."""
    rules, local = set(), set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        for match in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", _text(path), re.M):
            rules.add(match.group(1))
            if re.search(r"^\s+localrule:\s*True\s*$", match.group(2), re.M):
                local.add(match.group(1))
    return rules, local


def test_cluster_guide_and_slurm_profile_say_what_runs_where():
    """The cluster guide names the one rule submitted with sbatch and every localrule (run on the
    login node); the SLURM profile says the same. (tests/workflow/test_workflow_slurm.py checks
    it on a real cluster.)"""
    rules, local = rules_and_local_rules()
    submitted = rules - local
    assert submitted == {"compute_radius_shard"} and len(local) >= 7, (rules, local)
    guide = _text(ROOT / "docs" / "cluster-guide.md")
    paragraph = guide.split("**What runs where.**", 1)[1].split("\n\n", 1)[0]
    first, rest = paragraph.split("Every other rule", 1)
    assert set(re.findall(r"`(\w+)`", first)) - {"sbatch"} == submitted, first
    named_local = set(re.findall(r"`(\w+)`", rest.split("A dry run", 1)[0])) - {"localrule"}
    assert named_local == local, f"docs/cluster-guide.md lists {sorted(named_local)} as local, the workflow {sorted(local)}"
    profile = _text(ROOT / "profiles" / "slurm" / "config.yaml")
    assert re.search(r"only compute_radius_shard .* is submitted with sbatch", profile)


def test_one_profile_story_workflow_profile_everywhere():
    """Every command that selects a profile uses --workflow-profile; `--profile` appears only where
    a doc says why not (Snakemake would also load profiles/default, whose settings win)."""
    files = [*DOCS, ROOT / "config" / "README.md", ROOT / "Snakefile", ROOT / "workflow" / "nightly.sh",
             *sorted((ROOT / "profiles").glob("*/config.yaml"))]
    selecting = []
    for path in files:
        # saferisk's own option (validate-config --profile DIR) is not Snakemake's
        text = re.sub(r"validate-config(?:\s+[^-\s]\S*)?\s+--profile|--profile DIR", "", _text(path))
        selecting += [(path.name, m) for m in re.findall(r"snakemake[^\n`]*?(--[\w-]*profile)\b", text)]
        for match in re.finditer(r"(?<![\w-])--profile\b", text):  # only beside the why-not
            assert "--workflow-profile" in text[max(0, match.start() - 200):match.start()], (
                f"{path.name} names --profile without saying to use --workflow-profile: "
                f"{text[max(0, match.start() - 100):match.end() + 50]!r}")
    assert selecting and {m for _, m in selecting} == {"--workflow-profile"}, selecting
    guide = _text(ROOT / "docs" / "cluster-guide.md")
    assert "Use `--workflow-profile`, not\n`--profile`" in guide


def test_criteria_default_is_told_as_the_code_does_it():
    """No criterion: every property says NO CRITERION and the model is INCONCLUSIVE overall; the
    config reference, the user guide and the README say exactly that."""
    from saferisk.audit import INCONCLUSIVE, NO_CRITERION, summarize, table_from_results
    from saferisk.config import load_schema
    from saferisk.result import RadiusResult

    assert load_schema()["properties"]["criteria"]["default"] == []
    table = table_from_results([RadiusResult(input_id=str(i), property="robustness", norm="inf", max_radius=0.1,
                                             model="m", input_set="s", radius_lower=0.05, radius_estimate=0.06,
                                             radius_upper=0.07, status="ok") for i in range(3)])
    summary = summarize(table, criteria=[])
    assert [v.verdict for v in summary.property_verdicts] == [NO_CRITERION]
    (overall,) = summary.model_verdicts
    assert overall.verdict == INCONCLUSIVE
    config_readme = _text(ROOT / "config" / "README.md").split("## `criteria`", 1)[1].split("\n|", 1)[0]
    guide = _text(ROOT / "docs" / "user-guide.md").split("**Verdicts.**", 1)[1].split("\n\n")[2]  # after the table
    readme = _text(ROOT / "README.md").split("- **Cover**", 1)[1].split("\n- ", 1)[0]
    for name, text in (("config/README.md", config_readme), ("docs/user-guide.md", guide), ("README.md", readme)):
        flat = " ".join(text.split())
        assert f"`{NO_CRITERION}`" in flat and f"is `{INCONCLUSIVE}`" in flat and "no verdict" not in flat, (name, flat)
    assert overall.reason in " ".join(config_readme.split()) and overall.reason in " ".join(guide.split())


READMES_TIMES = ROOT / "benchmarks" / "results" / "readme_times.md"
MEASURED = re.compile(r"\b\d+(?:\.\d+)? (?:min \d+ s|s|min|minutes|seconds|MB|GB|bound passes)\b|\b\d+ of \d+\b")


def test_readme_times_and_sizes_are_measured():
    """Every duration, size and count the README's install, first-audit and budget passages state
    is one that benchmarks/time_readme.py measured (benchmarks/results/readme_times.md)."""
    readme = _text(ROOT / "README.md")
    measured = " ".join(_text(READMES_TIMES).split())
    passages = [readme.split("## Two commands", 1)[1].split("\n## ", 1)[0],
                readme.split("## Your own model", 1)[1].split("\n## ", 1)[0],
                readme.split("- **Certification budgets", 1)[1].split("\n- ", 1)[0].split("In the\n  default audit", 1)[1]]
    prose = [" ".join(re.sub(r"`[^`]+`", "", re.sub(r"^```[^\n]*\n.*?^```", "", p, flags=re.S | re.M)).split())
             for p in passages]  # without code: commands, versions
    claims = [m for text in prose for m in MEASURED.findall(text)]
    assert len(claims) >= 4, claims  # the audit's time, the no-op rerun, the download, the budget count
    unmeasured = [claim for claim in claims if claim not in measured]
    assert not unmeasured, f"README states {unmeasured}, which benchmarks/results/readme_times.md does not hold"
    assert "benchmarks/results/readme_times.md" in readme


PERFORMANCE_BLOCK = re.compile(r"(<!-- performance:start -->\n)(.*?)(<!-- performance:end -->)", re.S)


def measured_performance() -> str:
    """benchmarks/results/README_performance.md without its own '## Performance' heading."""
    return re.sub(r"\A#+ Performance\s*\n", "", _text(PERFORMANCE_FILE).strip()).strip()


def sync_performance_block() -> bool:
    """Paste the benchmarks' README_performance.md into the README's block; True if it changed."""
    readme = _text(ROOT / "README.md")
    updated = PERFORMANCE_BLOCK.sub(lambda m: m.group(1) + measured_performance() + "\n" + m.group(3), readme)
    if updated != readme:
        (ROOT / "README.md").write_text(updated, encoding="utf-8")
    return updated != readme


def performance_block() -> str:
    readme = _text(ROOT / "README.md")
    match = PERFORMANCE_BLOCK.search(readme)
    assert match, "README has no <!-- performance:start --> ... <!-- performance:end --> block"
    return match.group(2).strip()


def test_readme_performance_block_holds_only_measured_numbers():
    block = performance_block()
    if PERFORMANCE_FILE.is_file():
        assert block == measured_performance(), (
            "README performance block differs from benchmarks/results/README_performance.md: "
            "paste it again with `.venv/bin/python tests/project/test_docs.py --sync-performance`")
    else:
        assert "make bench" in block
        assert not re.search(r"\d", block.replace("make bench", "")), "numbers without a benchmark behind them"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--sync-performance"]:
        sys.exit("usage: python tests/project/test_docs.py --sync-performance")
    print("README.md performance block " + ("updated" if sync_performance_block() else "already up to date"))
