"""Shared fixtures. `ham10000` is the only way a test reaches the real data set; `tiny_lite0`,
`tiny_float32` and `tiny_int8` are the one tiny Lite0 model (and its LiteRT exports) that the
export, runtime, web, serve and browser tests share. The collection hook pins those fixtures'
users (and e2e's `tiny_run`'s) to one pytest-xdist worker each, so `make test` builds each once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis: `ci` draws the same examples on every run (derandomize), so a CI failure is
# reproducible and a green run is not luck; it saves nothing to .hypothesis/. CI sets
# HYPOTHESIS_PROFILE=ci (.ci/run; CI=true selects it too); local runs keep random exploration.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)

# xdist (`make test` runs `-n 2 --dist loadgroup --no-loadscope-reorder`) builds a session
# fixture once per worker that uses it, and a module fixture once per worker that runs a test of
# its module. Each expensive session fixture names one group; every test module that uses it (or
# is marked `xdist_group(<group>)`, for a fixture reached by `request.getfixturevalue`) goes
# whole into that group, so one worker builds it once. A module needing two groups merges them.
SESSION_GROUPS = {
    "tiny_run": "tiny_run",  # tests/e2e/conftest.py: a whole tiny `dvc repro` (minutes)
    "tiny_lite0": "tiny_lite0",
    "tiny_float32": "tiny_lite0",
    "tiny_int8": "tiny_lite0",
}
WIDE_SCOPES = {"class", "module", "package"}

# The development copy beside the project (never copied into it); see its README.md.
HAM10000 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ham10000"


@pytest.fixture
def ham10000(request: pytest.FixtureRequest) -> Path:
    """The HAM10000 folder (metadata.csv + images/). Only for tests marked `slow`, which the
    default suite deselects; skips cleanly when the data is not on this machine."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads ../shared/data/ham10000: mark it slow")
    if not (HAM10000 / "metadata.csv").is_file() or not (HAM10000 / "images").is_dir():
        pytest.skip(f"HAM10000 not found at {HAM10000}")
    return HAM10000


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="session")
def tiny_lite0(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`deploy.tiny_keras` (the untrained, He-initialised Lite0 at 24x32 for bcc/mel/nv), built
    once per session: model.keras beside its train_params.json. The export, LiteRT, web, serve
    and browser tests all read this one (each Lite0 build, save and conversion is seconds of
    CPU). Shared, so read-only: a test that writes beside the model copies the folder first; the
    teardown fails the session if any file here changed."""
    from deploy import tiny_keras

    folder = tmp_path_factory.mktemp("tiny_lite0")
    tiny_keras(folder)
    before = _digests(folder)
    yield folder / "model.keras"
    assert _digests(folder) == before, f"a test changed the shared tiny model in {folder}"


def _tiny_tflite(keras_path: Path, tmp: pytest.TempPathFactory, kind: str) -> Iterator[Path]:
    from deploy import TEMPERATURE, representative, tiny_tflite

    folder = tmp.mktemp(f"tiny_{kind}")
    path = tiny_tflite(keras_path, folder, (kind,), TEMPERATURE, representative())[kind]
    before = _digests(folder)
    yield path
    assert _digests(folder) == before, f"a test changed the shared {kind} model in {folder}"


@pytest.fixture(scope="session")
def tiny_float32(tiny_lite0: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`tiny_lite0` converted to float32 LiteRT (`deploy.tiny_tflite`, temperature
    deploy.TEMPERATURE), once per session, alone in its folder. Read-only, as `tiny_lite0`."""
    yield from _tiny_tflite(tiny_lite0, tmp_path_factory, "float32")


@pytest.fixture(scope="session")
def tiny_int8(tiny_lite0: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`tiny_lite0` converted to int8 LiteRT, calibrated on `deploy.representative()`
    (temperature deploy.TEMPERATURE), once per session. Read-only, as `tiny_lite0`."""
    yield from _tiny_tflite(tiny_lite0, tmp_path_factory, "int8")


def _xdist_groups(items: list[pytest.Item], root: Path) -> dict[Path, str]:
    """The xdist group of each test module that needs one: the session group(s) its tests use
    (joined when one module uses two, and named by the smallest name), else the module itself
    when it has a module- or class-scoped fixture (built once, not once per worker); modules
    absent run test by test."""
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.setdefault(g, g) != g:
            g = parent[g]
        return g

    shared: dict[Path, set[str]] = {}
    wide: set[Path] = set()
    for item in items:
        names = shared.setdefault(item.path, set())
        names.update(
            SESSION_GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in SESSION_GROUPS
        )
        names.update(str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args)
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d.scope in WIDE_SCOPES for ds in defs for d in ds):
            wide.add(item.path)
    for names in shared.values():
        first, *rest = sorted(names) or [""]  # "" for a module using none: a no-op
        for g in rest:  # union (one module needs both, so one worker runs both), named by the min
            a, b = sorted((find(g), find(first)))
            parent[b] = a
    groups = {path: find(min(names)) for path, names in shared.items() if names}
    groups.update({p: p.relative_to(root).as_posix() for p in wide if p not in groups})
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads xdist_group into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its module's xdist group (see SESSION_GROUPS). On an xdist worker, also
    order the work longest-first for the scheduler (which keeps collection order under
    --no-loadscope-reorder): the session groups, then module groups, then single tests."""
    groups = _xdist_groups(items, config.rootpath)
    for item in items:
        group = groups.get(item.path)
        if group is None:
            continue
        # xdist joins all of an item's group marks into one name, so a merged group must be the
        # item's only mark: drop the module's and class's own (all of one module share a group).
        for node in item.listchain():
            node.own_markers[:] = [m for m in node.own_markers if m.name != "xdist_group"]
        item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):  # only under xdist: a serial run keeps its usual order
        session = list(dict.fromkeys(SESSION_GROUPS.values()))

        def rank(item: pytest.Item) -> tuple[int, int]:
            g = groups.get(item.path)
            if g in session:
                return (0, session.index(g))
            return (1, 0) if g is not None else (2, 0)

        items.sort(key=rank)  # stable: collection order within each rank


class _GroupSuffix:
    """pytest-xdist 3.8 sends a test's group to the scheduler as an `@group` suffix it writes
    into `item._nodeid`, which pytest >= 9.2 no longer reads (structured ids): the groups are then
    silently ignored (pytest-dev/pytest-xdist#1386). Runs after xdist's hook and writes the
    suffix itself, only where xdist's did not take."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marks = item.iter_markers("xdist_group")
            suffix = "@" + "_".join(sorted({str(m.args[0]) for m in marks if m.args}))
            if suffix == "@" or item.nodeid.endswith(suffix):
                continue
            node_id = getattr(item, "_id", None)
            if node_id is None or not hasattr(type(node_id), "parse"):
                raise pytest.UsageError(f"cannot set the xdist group of {item.nodeid}")
            item._id = type(node_id).parse(item.nodeid + suffix)  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        config.pluginmanager.register(_GroupSuffix(), "dermai-xdist-group-suffix")
