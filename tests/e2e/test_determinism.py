"""Byte-identical reruns: the same code, data and params give the same bytes for every stage output.

The session's shared tiny `dvc repro` (`tiny_run`), then `dvc exp run -f` on a copy of it (every
stage reruns, the training included) with the same params: the model archive, every metric and
every hash in dvc.lock must be unchanged, so DVC (and a person) can tell that two runs trained
the same model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from pipeline import copy_run, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # up to two pipeline runs; load varies


def lock_hashes(project: Path) -> dict[str, str]:
    """stage/out -> md5 of every out recorded in dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {
        f"{stage}:{out['path']}": out.get("md5", "")
        for stage, body in lock["stages"].items()
        for out in body.get("outs", [])
    }


def metric_files(project: Path) -> dict[str, object]:
    out = {}
    for path in (
        sorted(project.glob("dvclive/**/metrics.json"))
        + sorted(project.glob("data/reports/**/*.json"))
        + [project / "reports/export.json"]
    ):
        if path.is_file():
            out[str(path.relative_to(project))] = json.loads(path.read_text())
    return out


def test_second_exp_run_reproduces_every_byte(tiny_run: Path, tmp_path: Path):
    project = copy_run(tiny_run, tmp_path / "proj")
    model = project / "models/model.keras"
    first_model = hashlib.sha256(model.read_bytes()).hexdigest()
    first_lock, first_metrics = lock_hashes(project), metric_files(project)
    assert "train:models/model.keras" in first_lock and first_metrics

    again = sh("dvc", "exp", "run", "-f", cwd=project)
    assert "Running stage 'train'" in again.stdout
    assert hashlib.sha256(model.read_bytes()).hexdigest() == first_model
    assert metric_files(project) == first_metrics
    second_lock = lock_hashes(project)
    changed = sorted(k for k in first_lock if second_lock.get(k) != first_lock[k])
    assert not changed, f"outputs whose bytes changed on a rerun: {changed}"
