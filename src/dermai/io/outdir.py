"""Output folders of commands: never destroy what DermAI did not write.

A command writes into its `--out` folder only when that folder is missing, empty, or carries the
marker (`.dermai-output.json`) that the same command left there on an earlier run. The marker
lists the files that run wrote. Everything is first written into a temp folder beside the target
and then moved in file by file (`os.replace`, atomic per file): files of the earlier run that
this run does not write again are removed, and every other file is left alone. A folder that is
the current folder, the home folder, the filesystem root or one of their parents is refused
outright, whatever it holds (`--out .` once deleted a whole working folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dermai.errors import DermaiError
from dermai.io.atomic import refuse_unsafe, remove_stale, temp_prefix, write_json

MARKER = ".dermai-output.json"


def _marker(folder: Path) -> dict | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_output_dir(path: str | Path, command: str) -> Path:
    """The resolved folder, if `command` may write there; else a one-line DermaiError."""
    target = refuse_unsafe(path)
    if not target.exists():
        return target
    if not target.is_dir():
        raise DermaiError(f"--out {path} exists and is not a folder")
    marker = _marker(target)
    if marker is None:
        if any(target.iterdir()):
            raise DermaiError(
                f"--out {path} already holds files that DermAI did not write (no {MARKER}): "
                "refusing to touch them; give an empty or new folder"
            )
        return target
    owner = marker.get("written_by")
    if owner != command:
        raise DermaiError(
            f"--out {path} holds the output of {owner or 'an unknown writer'} ({MARKER}), "
            f"not of {command}: give another folder"
        )
    return target


def _files(folder: Path) -> list[str]:
    """Every file under `folder`, relative POSIX paths, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def publish(staging: Path, target: Path, command: str) -> list[str]:
    """Move every file of `staging` into `target` (atomic per file), remove the files of the
    earlier run that are not written again, and record the new list in the marker. Returns it."""
    target.mkdir(parents=True, exist_ok=True)
    marker = _marker(target)
    if marker is not None and marker.get("written_by") != command:
        raise DermaiError(f"{target} is no longer {command}'s output folder ({MARKER} changed)")
    if marker is None and any(target.iterdir()):
        raise DermaiError(f"{target} gained files DermAI did not write while {command} ran")
    old = {str(f) for f in (marker or {}).get("files", [])}
    new = [f for f in _files(staging) if f != MARKER]
    foreign = [f for f in new if f not in old and os.path.lexists(target / f)]
    if foreign:
        raise DermaiError(
            f"{target / foreign[0]} was not written by {command}: refusing to replace it "
            f"({len(foreign)} such file(s)); move them away or give another folder"
        )
    # The marker first lists every file that may be ours, so a crash part-way leaves no file
    # of ours unlisted (a rerun then removes or replaces it) and no file of the user's listed.
    write_json(target / MARKER, {"written_by": command, "files": sorted(old | set(new))})
    for rel in new:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_dir() and not dest.is_symlink():
            raise DermaiError(f"{dest} is a folder where {command} writes a file")
        os.replace(staging / rel, dest)
    for rel in sorted(old - set(new)):
        dest = target / rel
        if dest.is_file() or dest.is_symlink():
            dest.unlink()
        parent = dest.parent
        while parent != target and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    write_json(target / MARKER, {"written_by": command, "files": new})
    return new


class OutputDir:
    """A command's output folder: write into `staging`, then `commit()` moves it in."""

    def __init__(self, path: str | Path, command: str) -> None:
        self.path = Path(path)
        self.command = command
        self.target = check_output_dir(path, command)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.target)
        self.staging = Path(
            tempfile.mkdtemp(prefix=temp_prefix(self.target), dir=self.target.parent)
        )
        self.committed = False

    def commit(self) -> list[str]:
        """Publish what was written so far (once); later writes go nowhere."""
        if self.committed:
            return []
        self.committed = True
        try:
            return publish(self.staging, self.target, self.command)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self) -> None:
        self.committed = True
        shutil.rmtree(self.staging, ignore_errors=True)


@contextlib.contextmanager
def output_dir(path: str | Path, command: str) -> Iterator[OutputDir]:
    """Check `path` first (before any work), yield an OutputDir whose `staging` folder the
    command fills, and publish it if the block succeeds; on failure the target is untouched
    unless the command committed first (to keep a report of why it failed)."""
    out = OutputDir(path, command)
    try:
        yield out
    except BaseException:
        out.discard()
        raise
    out.commit()
