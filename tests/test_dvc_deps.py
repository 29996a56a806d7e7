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
    """Each stage's definition (no `foreach`: every stage runs once, cv-train included)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    looped = [n for n, s in stages.items() if "foreach" in s or "matrix" in s]
    assert not looped, f"read the `do` template of {looped} here"
    return stages


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


# ---- param deps: derived from the code's reads of the params object ---------------------------
#
# A static walk from each stage's `run`: `params.load(...)` gives the params object; attribute
# reads (`prm.train.lr`, or `cfg.lr` after `cfg = prm.train`) are recorded, and a section passed
# to one of our functions (or methods of the params classes) is followed into it, bound to its
# parameter. A section that goes anywhere else (a foreign call, a container) counts as read
# whole. `params.as_dict(prm)` (the resolved params copied into train_params.json as a record of
# the run, not read by the code) is the one call that is not a read.

PARAMS_MODULE = "dermai.params"
PARAMS_SOURCES = {"load", "load_or_defaults", "parse"}  # functions returning the params object
NOT_READS = {(PARAMS_MODULE, "as_dict")}

Kind = tuple[str, ...]  # () the params object, ("train",) a section, ("index", "manifest") ...


def _section_types() -> dict[Kind, type]:
    import dataclasses

    from dermai import params

    out: dict[Kind, type] = {}

    def walk(cls: type, kind: Kind) -> None:
        out[kind] = cls
        for f in dataclasses.fields(cls):
            tp = f.type if isinstance(f.type, type) else getattr(params, str(f.type), None)
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                walk(tp, (*kind, f.name))

    walk(params.Params, ())
    return out


def leaf_params(kind: Kind = ()) -> set[str]:
    """Every leaf param under `kind`, dotted (`index.manifest.file`)."""
    import dataclasses

    types = _section_types()
    out = set()
    for f in dataclasses.fields(types[kind]):
        sub = (*kind, f.name)
        out |= leaf_params(sub) if sub in types else {".".join(sub)}
    return out


class _Module:
    """One parsed module: its functions (methods as Class.method) and what its imports name."""

    def __init__(self, name: str) -> None:
        self.name = name
        path = module_file(name)
        assert path is not None, name
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.functions: dict[str, ast.AST] = {}
        self.modules: dict[str, str] = {}  # local alias -> dotted module
        self.symbols: dict[str, tuple[str, str]] = {}  # local name -> (module, name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        self.functions[f"{node.name}.{item.name}"] = item
            elif isinstance(node, ast.FunctionDef):
                self.functions.setdefault(node.name, node)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.modules[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for a in node.names:
                    local = a.asname or a.name
                    if module_file(f"{base}.{a.name}") is not None:
                        self.modules[local] = f"{base}.{a.name}"
                    else:
                        self.symbols[local] = (base, a.name)


class ParamReads:
    """The params a stage's code reads, by the walk described above."""

    def __init__(self) -> None:
        self.types = _section_types()
        self.reads: set[str] = set()
        self._modules: dict[str, _Module] = {}
        self._done: set[tuple[str, str, frozenset]] = set()

    def module(self, name: str) -> _Module:
        if name not in self._modules:
            self._modules[name] = _Module(name)
        return self._modules[name]

    def read_whole(self, kind: Kind) -> None:
        self.reads |= leaf_params(kind)

    def function(self, module: str, name: str, bindings: dict[str, Kind]) -> None:
        key = (module, name, frozenset(bindings.items()))
        if key in self._done:
            return
        self._done.add(key)
        mod = self.module(module)
        node = mod.functions[name]
        env = dict(bindings)
        for _ in range(5):  # assignments, to a fixpoint (flow-insensitive)
            for n in ast.walk(node):
                if isinstance(n, ast.Assign | ast.AnnAssign) and n.value is not None:
                    for target in n.targets if isinstance(n, ast.Assign) else [n.target]:
                        self._bind(target, n.value, env, mod)
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute):
                kind = self.kind(n.value, env, mod)
                if kind is not None and (*kind, n.attr) not in self.types:
                    dotted = ".".join((*kind, n.attr))
                    if dotted in leaf_params(kind):
                        self.reads.add(dotted)
            elif isinstance(n, ast.Call):
                self._call(n, env, mod)

    def _bind(self, target: ast.AST, value: ast.AST, env: dict, mod: _Module) -> None:
        if isinstance(target, ast.Name):
            kind = self.kind(value, env, mod)
            if kind is not None:
                env[target.id] = kind
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                self._bind(t, v, env, mod)

    def _target(self, func: ast.AST, env: dict, mod: _Module) -> tuple[str, str] | None:
        """(module, function) a call goes to, when it is one of ours."""
        if isinstance(func, ast.Name):
            if func.id in mod.functions:
                return mod.name, func.id
            if func.id in mod.symbols:
                return mod.symbols[func.id]
        elif isinstance(func, ast.Attribute):
            kind = self.kind(func.value, env, mod)
            if kind is not None:  # a method of a params class
                return PARAMS_MODULE, f"{self.types[kind].__name__}.{func.attr}"
            if isinstance(func.value, ast.Name) and func.value.id in mod.modules:
                return mod.modules[func.value.id], func.attr
        return None

    def kind(self, expr: ast.AST, env: dict, mod: _Module) -> Kind | None:
        """The params object or section `expr` evaluates to, if any."""
        if isinstance(expr, ast.Name):
            return env.get(expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.kind(expr.value, env, mod)
            if base is not None and (*base, expr.attr) in self.types:
                return (*base, expr.attr)
            return None
        if isinstance(expr, ast.Call):
            target = self._target(expr.func, env, mod)
            if target is not None and target[0] == PARAMS_MODULE and target[1] in PARAMS_SOURCES:
                return ()
        return None

    def _call(self, call: ast.Call, env: dict, mod: _Module) -> None:
        args = [(i, a) for i, a in enumerate(call.args)] + [(k.arg, k.value) for k in call.keywords]
        passed = [(where, k) for where, a in args if (k := self.kind(a, env, mod)) is not None]
        if isinstance(call.func, ast.Name) and call.func.id == "getattr" and passed:
            name = call.args[1] if len(call.args) > 1 else None
            kind = passed[0][1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                self.reads.add(".".join((*kind, name.value)))
            else:
                self.read_whole(kind)
            return
        target = self._target(call.func, env, mod)
        method_of = (
            self.kind(call.func.value, env, mod) if isinstance(call.func, ast.Attribute) else None
        )
        if not passed and method_of is None:
            return
        if target in NOT_READS:
            return
        if target is None or target[1] not in self.module(target[0]).functions:
            for _, kind in passed:  # a section handed to code we cannot follow: all of it
                self.read_whole(kind)
            return
        node = self.module(target[0]).functions[target[1]]
        assert isinstance(node, ast.FunctionDef)
        names = [a.arg for a in node.args.posonlyargs + node.args.args]
        bindings: dict[str, Kind] = {}
        if method_of is not None:
            bindings[names[0]] = method_of
            names = names[1:]
        for where, kind in passed:
            name = names[where] if isinstance(where, int) and where < len(names) else where
            if isinstance(name, str):
                bindings[name] = kind
            else:
                self.read_whole(kind)
        self.function(target[0], target[1], bindings)


def derived_params(stage: dict) -> set[str]:
    """The params a stage reads, as dvc.yaml would list them: a section when every param of
    it is read, else each param."""
    walk = ParamReads()
    walk.function(stage_module(stage), "run", {})
    out = set()
    for section in sorted({r.split(".")[0] for r in walk.reads}):
        whole = leaf_params((section,))
        mine = {r for r in walk.reads if r.split(".")[0] == section}
        out |= {section} if mine == whole else mine
    return out


def declared_params(stage: dict) -> set[str]:
    out = set()
    for entry in stage.get("params", []):
        assert isinstance(entry, str), f"params from another file: {entry}"
        out.add(entry)
    return out


def test_stage_param_deps_are_the_params_its_code_reads():
    problems = []
    for name, stage in stages().items():
        derived, declared = derived_params(stage), declared_params(stage)
        if derived - declared:
            problems.append(f"stage {name!r} reads but does not list: {sorted(derived - declared)}")
        if declared - derived:
            problems.append(
                f"stage {name!r} lists params it never reads: {sorted(declared - derived)}"
            )
    assert not problems, "\n".join(problems)


def test_the_param_walk_follows_sections_into_functions_and_methods():
    """The walk itself, on real code paths: a section passed down (train's `cfg` into the epoch
    loop and the loss), a method of a params class (`split.fractions()`), a whole section handed
    to code it cannot follow, and the as_dict record that is not a read."""
    walk = ParamReads()
    walk.function("dermai.models.training", "train_epochs", {"cfg": ("train",)})
    assert {"train.batch_size", "train.class_weight_power", "train.imbalance"} <= walk.reads
    assert "train.focal_gamma" in walk.reads  # make_loss, two calls down
    assert not any(r.startswith("model.") for r in walk.reads)
    walk = ParamReads()
    walk.function(stage_module(stages()["validate"]), "run", {})
    assert {"split.train", "split.val", "split.test"} <= walk.reads  # via fractions()
    assert "split.duplicate_policy" not in walk.reads
    walk = ParamReads()
    walk.function(stage_module(stages()["train"]), "run", {})
    assert "evaluate.bootstrap" not in walk.reads  # train_params.json's copy is no read
