"""Shared e2e fixtures: a fresh tiny project, and one tiny `dvc repro` that tests copy."""

from pathlib import Path

import pytest

from pipeline import make_project, sh


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config after one full `dvc repro`, made once per session (a full run is minutes
    of CPU): tests take their own copy with `pipeline.copy_run` and never change this one."""
    project = make_project(tmp_path_factory.mktemp("tiny_run") / "proj")
    done = sh("dvc", "repro", cwd=project)
    # What a user's terminal shows (stdout, then stderr), for test_quiet_logs; beside the
    # project, not in it, so copies of the run stay as they were.
    (project.parent / "repro.log").write_text(done.stdout + done.stderr)
    return project
