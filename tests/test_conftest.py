"""The xdist grouping in tests/conftest.py: a module that needs two shared fixtures joins their
groups, so every module that builds either runs on one worker and each fixture is built once.
Fake items stand in for pytest's (only the attributes the hook reads), so no session is run."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

# By path: in a full run the module name `conftest` may already be tests/e2e/conftest.py.
_spec = importlib.util.spec_from_file_location(
    "dermai_tests_conftest", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
_xdist_groups = _root._xdist_groups
pytest_collection_modifyitems = _root.pytest_collection_modifyitems

ROOT = Path("/project")


@dataclass
class Node:
    """A module, class or test: own marks, and its parent chain as pytest's `listchain`."""

    own_markers: list[pytest.Mark] = field(default_factory=list)
    parent: Node | None = None

    def listchain(self) -> list[Node]:
        chain = [] if self.parent is None else self.parent.listchain()
        return [*chain, self]

    def iter_markers(self, name: str) -> list[pytest.Mark]:
        return [m for n in reversed(self.listchain()) for m in n.own_markers if m.name == name]

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.own_markers.append(mark.mark)


@dataclass
class Item(Node):
    path: Path = ROOT
    fixturenames: tuple[str, ...] = ()
    _fixtureinfo: Any = None


def group_mark(name: str) -> pytest.Mark:
    return pytest.mark.xdist_group(name).mark


def item(
    module: str,
    fixtures: tuple[str, ...] = (),
    marks: tuple[str, ...] = (),
    scope: str = "function",
    parent: Node | None = None,
) -> Item:
    info = SimpleNamespace(name2fixturedefs={"f": [SimpleNamespace(scope=scope)]})
    return Item(
        own_markers=[group_mark(m) for m in marks],
        parent=parent,
        path=ROOT / module,
        fixturenames=fixtures,
        _fixtureinfo=info,
    )


def test_one_session_fixture_names_its_group() -> None:
    items = [item("a.py", ("tiny_float32",)), item("b.py", ("tiny_run",)), item("c.py")]
    assert _xdist_groups(items, ROOT) == {ROOT / "a.py": "tiny_lite0", ROOT / "b.py": "tiny_run"}


def test_a_module_needing_two_groups_joins_them_for_every_module() -> None:
    """c.py needs both, so a.py (tiny_lite0 only) and b.py (tiny_run only) share its worker."""
    items = [
        item("a.py", ("tiny_int8",)),
        item("b.py", ("tiny_run",)),
        item("c.py", ("tiny_run",)),
        item("c.py", ("tiny_lite0",)),
    ]
    groups = _xdist_groups(items, ROOT)
    assert set(groups.values()) == {"tiny_lite0"}
    assert set(groups) == {ROOT / m for m in ("a.py", "b.py", "c.py")}


def test_joins_are_transitive_through_marks() -> None:
    items = [
        item("a.py", marks=("x", "y")),
        item("b.py", marks=("y", "z")),
        item("c.py", marks=("w",)),
    ]
    groups = _xdist_groups(items, ROOT)
    assert groups[ROOT / "a.py"] == groups[ROOT / "b.py"] == "x"
    assert groups[ROOT / "c.py"] == "w"


def test_a_module_scoped_fixture_keeps_its_module_on_one_worker() -> None:
    items = [item("sub/m.py", scope="module"), item("sub/m.py"), item("f.py")]
    assert _xdist_groups(items, ROOT) == {ROOT / "sub/m.py": "sub/m.py"}


@given(st.lists(st.sets(st.sampled_from("abcde"), max_size=3), min_size=1, max_size=8))
def test_groups_are_the_connected_components(uses: list[set[str]]) -> None:
    """Oracle: two modules share a group iff a chain of modules links them through shared
    names (components grown module by module); a module using no name has none."""
    items = [item(f"m{i}.py", marks=tuple(sorted(u))) for i, u in enumerate(uses)]
    groups = _xdist_groups(items, ROOT)
    components: list[set[str]] = []
    for u in uses:  # each module's names absorb every component they touch
        joined = set(u).union(*(c for c in components if c & u))
        components = [c for c in components if not c & u] + ([joined] if joined else [])
    for i, u in enumerate(uses):
        if not u:
            assert ROOT / f"m{i}.py" not in groups
            continue
        (component,) = [c for c in components if u <= c]
        assert groups[ROOT / f"m{i}.py"] == min(component)


def test_the_hook_leaves_each_item_one_mark_the_joined_group() -> None:
    """xdist names an item's group by joining all its marks, so a module marked `y` (on the
    module node, as pytestmark) in a group joined as `x` must end with `x` alone, as its
    neighbour does: otherwise the two would land in different groups."""
    module_b = Node(own_markers=[group_mark("y")])
    items = [
        item("a.py", marks=("x", "y")),
        item("b.py", parent=module_b),
        item("b.py", marks=("y",), parent=module_b),
    ]
    pytest_collection_modifyitems(SimpleNamespace(rootpath=ROOT), items)  # type: ignore[arg-type]
    for it in items:
        assert [m.args for m in it.iter_markers("xdist_group")] == [("x",)]


def test_the_ci_hypothesis_profile_is_derandomized_and_used_by_ci():
    from hypothesis import settings

    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None
    run = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "export HYPOTHESIS_PROFILE=ci" in run
