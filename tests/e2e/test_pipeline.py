"""`dvc repro` end to end on a tiny generated dataset, then push/pull through a local remote."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import copy_run, sh

# A full `dvc repro` (shared, see conftest.tiny_run), push/pull and an experiment: minutes of
# CPU, 30 min wall clock once on a loaded 2-core machine; far past the suite's 300 s default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]


def digest(root: Path, rels: list[str]) -> dict[str, str]:
    out = {}
    for rel in rels:
        p = root / rel
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def declared_outputs(root: Path) -> set[str]:
    """Every path dvc.yaml declares as an output of a stage: outs, metrics and plots."""
    out = set()
    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key, []):
                out.add(item if isinstance(item, str) else next(iter(item)))
    return out


def tracked_outputs(root: Path) -> list[str]:
    """Every output dvc tracks after a full repro, read from dvc.lock (outs, metrics and plots,
    cached or not), checked against what dvc.yaml declares."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    want = set(stages)  # one entry per stage: cv-train too, with folds off
    assert set(lock["stages"]) == want, "a stage has no dvc.lock entry"
    outs = sorted({o["path"] for s in lock["stages"].values() for o in s.get("outs", [])})
    assert set(outs) == declared_outputs(root)
    for rel in outs:
        assert (root / rel).exists(), rel
    return outs


def test_repro_push_pull_roundtrip(tiny_run: Path, tmp_path: Path):
    project = copy_run(tiny_run, tmp_path / "proj")  # the session's one full `dvc repro`
    summary = json.loads((project / "data/reports/index_summary.json").read_text())
    assert summary["files_found"] == 80 + 2 + 3 + 3
    assert summary["rejected"] == 3 and summary["indexed"] == 85
    leak = json.loads((project / "data/reports/leakage.json").read_text())
    assert leak["after"]["cross_split_leakage_groups"] == 0

    again = sh("dvc", "repro", cwd=project)
    assert "up to date" in again.stdout.lower()
    assert "Running stage" not in again.stdout

    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "local", str(remote), cwd=project)
    sh("dvc", "push", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "pipeline outputs", cwd=project)
    outputs = tracked_outputs(project)
    assert {
        "models/model.keras",
        "models/model_int8.tflite",
        "reports/evaluate",
        "data/reports/validation/summary.json",
        "dvclive/train/metrics.json",
    } <= set(outputs)
    before = digest(project, outputs)
    assert len(before) >= len(outputs)

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    sh("dvc", "pull", cwd=clone)
    status = sh("dvc", "status", cwd=clone)
    assert "up to date" in status.stdout.lower(), status.stdout
    assert tracked_outputs(clone) == outputs
    assert digest(clone, outputs) == before

    # Experiments, metrics and plots work on the pipeline's own outputs. The experiment targets
    # `train`, the stage checked here: evaluate and export downstream of it (minutes of CPU, and
    # rerun in full by test_determinism) keep the pulled outputs.
    exp = sh("dvc", "exp", "run", "-S", "train.lr=0.002", "train", cwd=clone)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'index'" not in exp.stdout
    assert "Running stage 'features'" not in exp.stdout  # a head param keeps the cache
    metrics = sh("dvc", "metrics", "show", cwd=clone).stdout
    assert "acc_ci" in metrics and "images" in metrics and "best_val" not in metrics
    shown = sh("dvc", "exp", "show", "--csv", cwd=clone).stdout
    assert "0.002" in shown
    sh("dermai", "plots", "--check-only", cwd=clone)  # every dvc.yaml plot has its data
    sh("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=clone)
    assert "dermaiViews" in (tmp_path / "plots/index.html").read_text()  # the offline page
    # A typo is refused by DVC itself; forcing it in with "+" is refused by the params loader.
    bad = sh("dvc", "exp", "run", "-S", "train.lrr=1", cwd=clone, check=False)
    assert bad.returncode != 0 and "train.lrr" in bad.stderr
    bad = sh("dvc", "exp", "run", "-S", "+train.lrr=1", cwd=clone, check=False)
    assert bad.returncode != 0 and "unknown key(s) train.lrr" in bad.stdout + bad.stderr


def test_failed_gate_stops_repro_before_train(project: Path):
    """A split that leaks (a train image copied into test) must never reach training."""
    sh("dvc", "repro", "split", cwd=project)
    train = (project / "data/splits/train.csv").read_text().splitlines()
    test = project / "data/splits/test.csv"
    test.write_text(test.read_text() + train[1] + "\n")
    sh("dvc", "commit", "-f", "split", cwd=project)  # as if the split stage had produced it

    proc = sh("dvc", "repro", cwd=project, check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "gate failed: " in err and "splits.cross_split_sha1" in err
    assert "Running stage 'train'" not in err
    assert not (project / "models/model.keras").exists()
    assert not (project / "data/tfrecords").exists()


def queue_until_done(project: Path, timeout_s: float = 1500) -> str:
    """Wait for DVC's queue workers to finish every queued experiment; returns the status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = sh("dvc", "queue", "status", cwd=project).stdout
        if not any(s in status for s in ("Queued", "Running")):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"queue not done after {timeout_s} s:\n{status}")
        time.sleep(5)


@pytest.mark.slow
def test_queue_two_learning_rates_then_compare(project: Path):
    """The README's recipe: `dvc exp run --queue -S 'train.lr=1e-3,3e-4'`, `dvc queue start
    -j 2`, then `dermai compare` the two experiments; the headline metrics stay narrow."""
    sh("dvc", "repro", cwd=project)
    metrics = sh("dvc", "metrics", "show", cwd=project).stdout
    width = max(len(line.rstrip()) for line in metrics.splitlines())
    assert width <= 120, metrics
    assert "metrics.json" in metrics and "acc_ci" in metrics and "index_summary" not in metrics
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "baseline outputs", cwd=project)

    queued = sh("dvc", "exp", "run", "--queue", "-S", "train.lr=1e-3,3e-4", cwd=project)
    assert queued.stdout.count("Queued experiment") == 2, queued.stdout
    try:
        sh("dvc", "queue", "start", "-j", "2", cwd=project)
        status = queue_until_done(project)
    finally:
        sh("dvc", "queue", "stop", "--kill", cwd=project, check=False)
    assert status.count("Success") == 2, status
    names = sh("dvc", "exp", "list", "--name-only", cwd=project).stdout.split()
    assert len(names) == 2, names

    header = sh("dvc", "exp", "show", "--only-changed", "--csv", cwd=project).stdout
    columns = header.splitlines()[0].split(",")
    assert "train.lr" in columns and len(columns) <= 25, columns

    out = sh("dermai", "compare", *names, cwd=project).stdout
    assert "B - A on the same" in out and "McNemar on top-1" in out and "Verdict:" in out
    bad = sh("dermai", "compare", names[0], "no-such-exp", cwd=project, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "dermai compare: error: 'no-such-exp' is neither a predictions file nor a known "
        "experiment or Git revision in ."
    )


def test_split_folds_is_a_count_one_stage_trains_every_fold(tiny_run: Path, tmp_path: Path):
    """`dvc exp run -S split.folds=3 cv` (the issue's form, an int): the one cv-train stage trains
    folds 0..2 in turn on the shared feature cache and the cv report pools all 85 images once;
    `split.folds=1` is refused with its one-line message before any training."""
    project = copy_run(tiny_run, tmp_path / "proj")
    off = json.loads((project / "reports/cv/report.json").read_text())
    assert off["folds"] == 0 and sorted(p.name for p in (project / "models/cv").iterdir()) == [
        "README.md"
    ]

    bad = sh("dvc", "exp", "run", "-S", "split.folds=1", "cv", cwd=project, check=False)
    assert bad.returncode != 0
    assert "split.folds=1 is no cross-validation" in bad.stdout + bad.stderr
    assert "Running stage 'cv-train'" not in bad.stdout

    done = sh("dvc", "exp", "run", "-S", "split.folds=3", "cv", cwd=project)
    log = done.stdout + done.stderr
    assert log.count("Running stage 'cv-train'") == 1 and "cv-train@" not in log
    for f in range(3):
        assert f"fold {f} ({f + 1}/3): " in log, log[-3000:]
    models = project / "models/cv"
    assert sorted(p.name for p in models.iterdir()) == ["README.md", "fold_0", "fold_1", "fold_2"]
    held = [pd.read_csv(models / f"fold_{f}/oof.csv")["image_id"] for f in range(3)]
    folds = pd.read_csv(project / "data/splits/folds.csv", dtype=str)
    for f in range(3):  # each fold predicts exactly the images folds.csv holds out in it
        assert sorted(held[f]) == sorted(folds.loc[folds["fold"] == str(f), "image_id"])
    report = json.loads((project / "reports/cv/report.json").read_text())
    assert report["folds"] == 3 and report["n"] == len(folds) == 85
