"""A stage dies with the `dvc repro` that started it.

Killing `dvc repro` once left `dermai tfrecords` running, reparented to PID 1: it finished
writing after a second `dvc repro` had already called the stage cached. DVC sets `DVC_STAGE` for
every stage command it runs; under it, `die_with_parent` makes this process end when DVC does:

- the kernel sends SIGTERM when the parent dies (Linux `PR_SET_PDEATHSIG`), which covers DVC
  itself and a shell that `exec`s the command (bash does);
- a daemon thread watches the nearest ancestor that is not a shell (DVC when a shell such as
  dash waits in between, which PR_SET_PDEATHSIG cannot see) with psutil, and sends the same
  SIGTERM when it is gone;
- on that SIGTERM the process kills its own children first (the index and tfrecords worker
  pools), then exits 143. Temps it leaves are removed by the next write (`io.atomic`).

Outside DVC nothing changes: `nohup dermai train &` must outlive its shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from types import FrameType

SHELLS = {"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "busybox"}
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5


def _end(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: end the children (worker pools), then this process."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
    os._exit(128 + signum)


def _watch(anchor_pid: int, anchor_started: float) -> None:
    import psutil

    while True:
        try:
            anchor = psutil.Process(anchor_pid)
            alive = anchor.create_time() == anchor_started and anchor.status() != "zombie"
        except psutil.Error:
            alive = False
        if not alive:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        threading.Event().wait(POLL_SECONDS)


def die_with_parent(environ: dict[str, str] | None = None) -> bool:
    """Under DVC, end this process (and its children) when DVC ends; True if armed."""
    env = os.environ if environ is None else environ
    if not env.get("DVC_STAGE"):
        return False
    import psutil

    parent = os.getppid()
    signal.signal(signal.SIGTERM, _end)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request: too late for it
            os.kill(os.getpid(), signal.SIGTERM)
    try:
        anchor = psutil.Process(parent)
        while anchor.name() in SHELLS and (up := anchor.parent()) is not None:
            anchor = up
        started = anchor.create_time()
    except psutil.Error:
        return True
    threading.Thread(target=_watch, args=(anchor.pid, started), daemon=True).start()
    return True
