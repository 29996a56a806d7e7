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


# The packages whose import costs (a second or more here) a function-local import defers: a
# command's `--help` and a light stage must not pay for them.
HEAVY = {
    "tensorflow",
    "keras",
    "dvclive",
    "great_expectations",
    "fastapi",
    "uvicorn",
    "ai_edge_litert",
    "sklearn",
    "scipy",
    "dvc",
    "pandas",
    "imagehash",
}
PKG = ROOT / "src" / "dermai"


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "dermai":
        return None
    base = PKG.parent.joinpath(*parts)
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.is_file():
            return f
    return None


def _top_level_imports(path: Path) -> set[str]:
    """What importing `path` imports: module-level imports, not those inside functions or
    `if TYPE_CHECKING:`."""
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for n in body:
            if isinstance(n, ast.Import):
                out.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                out.add(n.module)
                out.update(f"{n.module}.{a.name}" for a in n.names)
            elif isinstance(n, ast.If) and not (
                isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING"
            ):
                visit(n.body + n.orelse)
            elif isinstance(n, ast.Try):
                visit(n.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return out


def heavy_imports(name: str, seen: set[str] | None = None) -> set[str]:
    """The HEAVY packages that importing module `name` imports, through module-level imports."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    f = _module_file(name)
    if f is None:
        return {name.split(".")[0]} & HEAVY
    parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
    found = set().union(*(heavy_imports(p, seen) for p in parents))
    for imp in _top_level_imports(f):
        found |= heavy_imports(imp, seen)
    return found


def function_local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each import of one of our modules inside a function of `path`."""
    out = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for n in ast.walk(fn):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dermai"):
                for a in n.names:
                    sub = f"{n.module}.{a.name}"
                    out.append((n.lineno, sub if _module_file(sub) else str(n.module)))
            elif isinstance(n, ast.Import):
                out += [(n.lineno, a.name) for a in n.names if a.name.startswith("dermai")]
    return out


def test_function_local_imports_of_our_modules_defer_a_heavy_package():
    """An import inside a function buys one thing here, the lazy CLI: it defers a heavy package
    (TensorFlow, pandas, ...) until the command runs. Any other belongs at the top."""
    light = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(PKG.rglob("*.py"))
        for line, module in function_local_imports(path)
        if not heavy_imports(module)
    ]
    assert not light, "function-local imports that defer nothing heavy:\n" + "\n".join(light)


def test_the_heavy_walk_sees_through_our_modules(tmp_path: Path):
    assert "tensorflow" in heavy_imports("dermai.models.data")  # imports it at the top
    assert heavy_imports("dermai.errors") == set()
    assert "tensorflow" not in heavy_imports("dermai.models.archive")  # keras only lazily
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from dermai.errors import DermaiError\n    import dermai.params\n")
    assert function_local_imports(f) == [(2, "dermai.errors"), (3, "dermai.params")]
