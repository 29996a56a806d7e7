"""Interrupted runs: a stage killed mid-write (SIGKILL) leaves temps that its next run removes.

The kill is exact, not timed: the child process replaces `os.replace` with a SIGKILL to itself,
so it dies with the finished temp on disk and the target not yet renamed into place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from dermai.io import atomic as io
from pipeline import ROOT, TINY, merge

KILL_AT_RENAME = """
import os, signal, sys
from dermai.cli import main
os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[1:]))
"""


def dermai(cwd: Path, *argv: str, kill_at_rename: bool = False) -> subprocess.CompletedProcess:
    code = (
        KILL_AT_RENAME
        if kill_at_rename
        else "import sys; from dermai.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def temps(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f".{name}.*"))


def test_killed_stages_leave_temps_that_the_next_run_removes(tmp_path: Path):
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw = tmp_path / "data" / "raw" / "sample"

    # a folder output (atomic_dir): the killed run leaves data/raw/.sample.<pid>.<rand>/
    killed = dermai(tmp_path, "sample", "--out", str(raw), kill_at_rename=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not raw.exists() and len(temps(raw.parent, "sample")) == 1
    assert dermai(tmp_path, "sample", "--out", str(raw)).returncode == 0
    assert raw.is_dir() and temps(raw.parent, "sample") == []

    # file outputs (atomic_path): data/index/.index.csv.<pid>.<rand>.tmp
    index_dir = tmp_path / "data" / "index"
    argv = (
        "index",
        "--out",
        str(index_dir / "index.csv"),
        "--rejects",
        str(tmp_path / "rejects.csv"),
        "--summary",
        str(tmp_path / "index_summary.json"),
    )
    killed = dermai(tmp_path, *argv, kill_at_rename=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert temps(index_dir, "index.csv"), "the kill left no temp: the test did not kill mid-write"
    assert not (index_dir / "index.csv").exists()
    done = dermai(tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert temps(index_dir, "index.csv") == [] and temps(tmp_path, "rejects.csv") == []
    assert (index_dir / "index.csv").is_file()


def test_remove_stale_keeps_live_writers_temps(tmp_path: Path):
    target = tmp_path / "out.csv"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.csv.{dead.pid}.abcd1234.tmp"
    legacy = tmp_path / ".out.csv.k2j4h5g6.tmp"  # the naming before pids were recorded
    mine = tmp_path / f"{io.temp_prefix(target)}zzzz9999.tmp"
    live = tmp_path / f".out.csv.{os.getppid()}.qqqq1111.tmp"
    other = tmp_path / ".out.csv.keep"  # not a temp name
    stale_dir = tmp_path / f".out.csv.{dead.pid}.dir12345"
    for p in (stale, legacy, mine, live, other):
        p.write_text("x")
    stale_dir.mkdir()
    (stale_dir / "part").write_text("x")
    removed = io.remove_stale(target)
    assert sorted(removed) == sorted([stale, legacy, stale_dir])
    assert mine.exists() and live.exists() and other.exists()
