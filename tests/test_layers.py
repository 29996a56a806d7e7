"""Outside the stages themselves (and their own tests), nothing imports `dermai.stages.*`.

import-linter (`make lint`) holds the rule inside `src/`; this test extends it to `bench/` and to
tests of other layers, so shared code moves down a layer instead of being borrowed from a stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Who may import a stage module: the stages, the CLI that dispatches to them, and their tests.
ALLOWED = (
    "src/dermai/stages/",
    "src/dermai/cli.py",
    "tests/stages/",
    "tests/e2e/",
    "tests/test_cli.py",
    "tests/test_dvc_deps.py",
    "tests/test_layers.py",
)


def stage_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("dermai.stages")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("dermai.stages"):
                found.append(node.module)
            elif node.module == "dermai":
                found += [f"dermai.{a.name}" for a in node.names if a.name == "stages"]
    return found


def test_no_code_outside_stages_imports_a_stage():
    offenders = []
    for folder in ("src", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(ALLOWED):
                continue
            offenders += [f"{rel}: {m}" for m in stage_imports(path)]
    assert not offenders, "non-stage code imports a stage:\n" + "\n".join(offenders)


def test_the_check_sees_both_import_forms(tmp_path: Path):
    f = tmp_path / "x.py"
    f.write_text(
        "from dermai.stages.index import x\nimport dermai.stages.train\nfrom dermai import stages\n"
    )
    assert stage_imports(f) == ["dermai.stages.index", "dermai.stages.train", "dermai.stages"]


def test_test_file_names_are_unique():
    """pytest imports test files by basename (no packages under tests/), so two files with one
    name stop collection of the whole suite."""
    names: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(path.relative_to(ROOT).as_posix())
    clashes = {k: v for k, v in names.items() if len(v) > 1}
    assert not clashes, f"test files sharing a name: {clashes}"
