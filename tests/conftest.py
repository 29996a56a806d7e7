"""Shared fixtures. `ham10000` is the only way a test reaches the real data set; `tiny_lite0`,
`tiny_float32` and `tiny_int8` are the one tiny Lite0 model (and its LiteRT exports) that the
export, runtime, web, serve and browser tests share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    yield path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"a test changed {path}"


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
