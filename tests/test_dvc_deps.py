"""Each DVC stage's code `deps` are exactly the src/dermai modules its command imports.

The closure is derived from the code: an AST import graph over src/dermai (function-local imports
included, package `__init__` files included), rooted at the module that `cli.COMMANDS` maps the
stage's `cmd` to. A dep that misses an imported module makes DVC call a stage "up to date" with
outputs made by old code; a dep that is not imported reruns a stage for nothing.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from dermai.cli import COMMANDS
from pipeline import ROOT, make_project, sh

PKG = ROOT / "src" / "dermai"


def module_file(name: str) -> Path | None:
    """The file of dotted module `name` under src/dermai, or None if it is not one of ours."""
    parts = name.split(".")
    if parts[0] != "dermai":
        return None
    base = PKG.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(path: Path) -> set[str]:
    """Dotted dermai modules that `path` imports anywhere (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            for alias in node.names:  # `from dermai.core import hashing` imports a module
                out.add(f"{base}.{alias.name}")
    return {name for name in out if module_file(name) is not None}


def closure(root: str) -> set[Path]:
    seen: set[str] = set()
    todo = with_parents(root)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in imports_of(module_file(name)):
            todo.extend(with_parents(dep))
    return {module_file(n) for n in seen}


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_module(stage: dict) -> str:
    argv = shlex.split(stage["cmd"])
    assert argv[0] == "dermai", f"cmd does not run the dermai CLI: {stage['cmd']}"
    command = next(a for a in argv[1:] if not a.startswith("-"))
    return COMMANDS[command][0]


def covered(deps: list[str]) -> tuple[set[Path], list[str]]:
    """Python files the code deps cover, and the code deps as written."""
    files: set[Path] = set()
    code = [d for d in deps if isinstance(d, str) and d.startswith("src/")]
    for dep in code:
        p = ROOT / dep
        files.update(p.rglob("*.py") if p.is_dir() else [p])
    return {f.resolve() for f in files if "__pycache__" not in f.parts}, code


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_stage_code_deps_are_the_import_closure():
    problems = []
    for name, stage in stages().items():
        needed = {p.resolve() for p in closure(stage_module(stage))}
        have, code = covered(stage.get("deps", []))
        missing = sorted(rel(p) for p in needed - have)
        if missing:
            problems.append(f"stage {name!r} imports but does not list: {', '.join(missing)}")
        unused = sorted(rel(p) for p in have - needed)
        if unused:
            problems.append(f"stage {name!r} lists modules it never imports: {', '.join(unused)}")
        for dep in code:
            if not (ROOT / dep).exists():
                problems.append(f"stage {name!r} lists a path that does not exist: {dep}")
    assert not problems, "\n".join(problems)


def test_import_graph_sees_local_relative_and_package_imports(tmp_path: Path):
    """The walker itself: function-local imports and `from pkg import module` count."""
    found = {module_name(p) for p in closure("dermai.cli")}
    assert {"dermai", "dermai.cli", "dermai.errors"} <= found
    # cli.py imports stage modules only by name (importlib), so none is in its closure
    assert not any(n.startswith("dermai.stages.") for n in found)
    for name, stage in stages().items():
        mod = stage_module(stage)
        assert module_file(mod) is not None, f"stage {name}: {mod} not found"


# ---- e2e: what `dvc status` says after touching a module ---------------------------------------


def _fill(project: Path, rel_path: str) -> None:
    """A placeholder output/dep so that `dvc commit` can record the lock without running."""
    p = project / rel_path
    if p.exists():
        return
    if Path(rel_path).suffix:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}\n")
    else:
        p.mkdir(parents=True, exist_ok=True)
        (p / "placeholder.json").write_text("{}\n")


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def _status_after_touch(project: Path, rel_path: str) -> set[str]:
    target = project / rel_path
    if target.is_dir():
        target = next(iter(sorted(target.rglob("*.py"))))
    target.write_text(target.read_text() + "\n# touched\n")
    out = sh("dvc", "status", "--json", cwd=project).stdout
    target.write_text(target.read_text().removesuffix("\n# touched\n"))
    return set(yaml.safe_load(out) or {})


@pytest.mark.e2e
def test_dvc_status_after_touching_code(tmp_path: Path):
    project = make_project(tmp_path / "proj")
    params = yaml.safe_load((project / "params.yaml").read_text())

    def subst(s: str) -> str:
        def look(m: re.Match) -> str:
            v: object = params
            for k in m.group(1).split("."):
                v = v[k]  # type: ignore[index]
            return str(v)

        return re.sub(r"\$\{([^}]+)\}", look, s)

    for stage in stages().values():
        for key in ("deps", "outs", "metrics", "plots"):
            for path in _paths(stage.get(key)):
                _fill(project, subst(path))
    sh("dvc", "commit", "-f", "-q", cwd=project)
    assert sh("dvc", "status", "--json", cwd=project).stdout.strip() in ("{}", "")

    def importers(module: str) -> set[str]:
        f = module_file(module)
        return {n for n, s in stages().items() if f in closure(stage_module(s))}

    hashing = _status_after_touch(project, "src/dermai/core/hashing.py")
    assert hashing == importers("dermai.core.hashing")
    assert {"index", "tfrecords"} <= hashing
    assert _status_after_touch(project, "src/dermai/web") == set()


def wanted_deps(stage: dict) -> list[str]:
    """The closure written compactly: a folder when every module in it is imported."""
    needed = {p.resolve() for p in closure(stage_module(stage))}
    out: list[str] = []
    done: set[Path] = set()
    for d in sorted({p.parent for p in needed} - {PKG}, key=lambda d: len(d.parts)):
        files = {f.resolve() for f in d.rglob("*.py") if "__pycache__" not in f.parts}
        if files <= needed and not files & done:
            out.append(rel(d))
            done |= files
    out += [rel(p) for p in needed - done]
    return sorted(out)


if __name__ == "__main__":  # print the deps dvc.yaml should list
    for _name, _stage in stages().items():
        print(_name, *wanted_deps(_stage), sep="\n  ")
