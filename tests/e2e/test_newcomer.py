"""The README's first steps, as a newcomer meets them on a fresh clone whose dvc.lock was made on
another machine (its evaluate outputs have other bytes there, and no remote holds them):
`make run`, commit the baseline it tells you to, `dvc exp run -S ...`, `make exp`, then
`dermai compare HEAD <exp>`.

Cheap: the clone checks out the shared tiny run's DVC cache, so `make run`'s `dvc repro`
reruns only what is not there (evaluate, headline); the experiment reruns evaluate onwards.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import ROOT, copy_run, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]  # + the shared tiny run

OTHER_MACHINE = "0123456789abcdef0123456789abcdef.dir"  # reports/evaluate built elsewhere


def ship_with_foreign_lock(tiny_run: Path, dest: Path) -> Path:
    """The project as it ships: every file and a dvc.lock committed, but reports/evaluate's
    hash is one this machine never builds and no cache holds."""
    origin = copy_run(tiny_run, dest)
    for rel in ("Makefile", "data/reports/validation/.gitignore"):  # (the latter ignores docs/)
        shutil.copy2(ROOT / rel, origin / rel)
    lock = (origin / "dvc.lock").read_text()
    stages = yaml.safe_load(lock)["stages"]
    (real,) = [o["md5"] for o in stages["evaluate"]["outs"] if o["path"] == "reports/evaluate"]
    (origin / "dvc.lock").write_text(lock.replace(real, OTHER_MACHINE))
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "ships with a dvc.lock made on another machine", cwd=origin)
    return origin


def make(target: str, cwd: Path, **env: str) -> str:
    """`make <target>` with this venv (its install stamp taken as up to date)."""
    venv = Path(sys.executable).parent.parent
    stamp = venv / ".installed-dermai"
    args = ("make", "--no-print-directory", "-o", str(stamp), target, f"VENV={venv}")
    with pytest.MonkeyPatch.context() as mp:  # sh() passes os.environ on
        for k, v in env.items():
            mp.setenv(k, v)
        done = sh(*args, cwd=cwd)
    return done.stdout + done.stderr


def test_fresh_clone_make_run_commit_baseline_experiment_compare(tiny_run: Path, tmp_path):
    origin = ship_with_foreign_lock(tiny_run, tmp_path / "origin")
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(origin), str(clone), cwd=tmp_path)
    # What a full `dvc repro` here would rebuild byte for byte (every output but the foreign
    # one), from the tiny run's cache instead of minutes of training.
    shutil.copytree(origin / ".dvc" / "cache", clone / ".dvc" / "cache")
    sh("dvc", "checkout", cwd=clone, check=False)  # reports/evaluate: not in the cache

    out = make("run", clone)
    assert "make run: dvc.lock differs from the commit" in out, out[-3000:]
    changed = sh("git", "status", "--porcelain", cwd=clone).stdout.split("\n")
    assert [line[3:] for line in changed if line] == ["dvc.lock"], changed

    # Before the baseline is committed, HEAD's predictions are nowhere: one line says what to do.
    early = sh(
        "dermai", "compare", "HEAD", "reports/evaluate/predictions_test.csv", cwd=clone, check=False
    )
    assert early.returncode == 1
    last = early.stderr.strip().splitlines()[-1]
    assert "not in the DVC cache" in last and "git commit" in last, last

    sh("git", "add", "-A", cwd=clone)  # the README's baseline step
    sh("git", "commit", "-qm", "baseline: this machine", cwd=clone)
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""

    exp = sh("dvc", "exp", "run", "-n", "tta", "-S", "evaluate.tta=flips", cwd=clone)
    assert "Running stage 'evaluate'" in exp.stdout and "Running stage 'train'" not in exp.stdout

    shown = make("exp", clone, COLUMNS="120")
    lines = [line for line in shown.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 120, shown
    assert "evaluate.tta" in shown and "flips" in shown and "tta" in shown, shown
    assert "reports/evaluate" not in shown and ".dir" not in shown, shown  # no dep hashes

    answer = sh("dermai", "compare", "HEAD", "tta", cwd=clone)
    assert "B - A on the same" in answer.stdout and "Verdict:" in answer.stdout
