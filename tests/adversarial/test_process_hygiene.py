"""Issue 22, process hygiene: a killed run leaves nothing for git to commit and no process behind.

On the landed main the temps of a killed stage (`.index.csv.<pid>.*.tmp`,
`data/.tfrecords.<pid>.*/`) were not git-ignored, so the README's `git add -A` committed them, and
killing `dvc repro` left the stage running, reparented to PID 1. Processes are found by PID and
ancestry (psutil), never by name, and only the ones this test started are ever killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from PIL import Image

from dermai.io.atomic import temp_prefix

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("target", "suffix"),
    [
        ("data/index/index.csv", ".tmp"),
        ("data/tfrecords", ""),
        ("models/model.keras", ".keras"),
        ("models/pretrained/imagenet.weights.h5", ".weights.h5"),
        ("site", ""),
    ],
)
def test_temp_names_are_git_ignored(target, suffix):
    path = ROOT / target
    temp = path.parent / f"{temp_prefix(path)}Ab3_x9Zq{suffix}"
    rel = temp.relative_to(ROOT).as_posix()
    done = subprocess.run(["git", "check-ignore", "--no-index", "-q", rel], cwd=ROOT, check=False)
    assert done.returncode == 0, f"{rel} is not git-ignored"


def project(tmp: Path, copies: int) -> Path:
    """A DVC project whose one stage, `dermai index`, decodes `copies` 4000x4000 PNGs (hard
    links to one file) on two workers: many seconds of work."""
    proj = tmp / "proj"
    leaf = proj / "raw" / "s" / "nv" / "30-59"
    leaf.mkdir(parents=True)
    Image.new("L", (4000, 4000), 90).save(leaf / "f0.png")
    for i in range(1, copies):
        os.link(leaf / "f0.png", leaf / f"f{i}.png")
    (proj / "params.yaml").write_text(
        yaml.safe_dump({"index": {"raw_root": "raw", "workers": 2, "chunksize": 1}})
    )
    cmd = "dermai index --out out/index.csv --rejects out/rejects.csv --summary out/summary.json"
    stage = {"cmd": cmd, "deps": ["raw"], "params": ["index"], "outs": ["out"]}
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"index": stage}}))
    subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"],
        cwd=proj,
        check=True,
    )
    return proj


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shell", ["/bin/bash", "/bin/sh"])  # bash execs the stage; dash waits
def test_killing_dvc_repro_mid_stage_leaves_no_dermai_process(tmp_path, shell):
    if not Path(shell).exists() or not sys.platform.startswith("linux"):
        pytest.skip(f"needs Linux and {shell}")
    proj = project(tmp_path, copies=400)
    env = {
        **os.environ,
        "SHELL": shell,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    dvc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro"],
        cwd=proj,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        stage = None
        while time.monotonic() < deadline and stage is None:
            for p in psutil.Process(dvc.pid).children(recursive=True):
                try:
                    if "index" in p.cmdline() and len(p.children()) >= 2:  # its 2 workers
                        stage = p
                except psutil.Error:
                    continue
            time.sleep(0.1)
        assert stage is not None, "the stage did not start"
        time.sleep(1.0)  # mid-stage: workers busy
        tree = psutil.Process(dvc.pid).children(recursive=True)
        assert not (proj / "out" / "summary.json").exists(), "the stage ended before the kill"
        dvc.send_signal(signal.SIGKILL)
        dvc.wait(30)
        gone_by = time.monotonic() + 15
        while time.monotonic() < gone_by and any(alive(p) for p in tree):
            time.sleep(0.1)
        left = [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in tree if alive(p)]
        assert not left, f"left running after dvc repro was killed: {left}"
    finally:
        if dvc.poll() is None:
            dvc.kill()
        for p in tree:  # only what this test started, by PID
            if alive(p):
                p.kill()
        shutil.rmtree(proj, ignore_errors=True)


def test_outside_dvc_a_command_may_outlive_its_shell():
    """`nohup dermai train &` must survive the shell: only DVC_STAGE arms the watch."""
    from dermai.lifecycle import die_with_parent

    assert die_with_parent({}) is False
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
