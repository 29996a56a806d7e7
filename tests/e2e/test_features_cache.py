"""Experiments reuse the frozen-backbone cache: `dvc exp run` on head or phase-2 params skips the
`features` stage, and DVC's run cache brings back a cache computed before for the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import sh

# 16 min wall at load average ~10 on 2 cores (5 exp runs): slow, with its own time limit.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]


def ran(stage: str, out: str) -> bool:
    return f"Running stage '{stage}'" in out


def test_head_experiments_skip_features_and_run_cache_reuses_it(project: Path) -> None:
    sh("dvc", "repro", "train", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "outputs", cwd=project)

    lr = sh("dvc", "exp", "run", "-S", "train.lr=0.002", "train", cwd=project).stdout
    assert ran("train", lr) and not ran("features", lr)
    phase2 = sh(
        "dvc",
        "exp",
        "run",
        "-S",
        "train.finetune_lr=0.001",
        "-S",
        "train.finetune_epochs=2",
        "train",
        cwd=project,
    ).stdout
    assert ran("train", phase2) and not ran("features", phase2)

    # A param the cache depends on reruns it...
    two = sh("dvc", "exp", "run", "-S", "train.cache_variants=2", "train", cwd=project).stdout
    assert ran("features", two) and ran("train", two)
    # ...and going back to the committed value restores the first cache from the run cache.
    back = sh(
        "dvc",
        "exp",
        "run",
        "-S",
        "train.cache_variants=1",
        "-S",
        "train.lr=0.003",
        "train",
        cwd=project,
    ).stdout
    assert not ran("features", back) and ran("train", back)
    assert "Stage 'features' is cached - skipping run" in back
