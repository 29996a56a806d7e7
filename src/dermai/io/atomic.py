"""Atomic writes: an interrupted stage never leaves a half-written file for DVC to cache.

Temps sit beside their target as `.<name>.dermai-tmp.<pid>.<8 random chars>[suffix]`, a name
git ignores (`.gitignore`: `.*.dermai-tmp.*`), so `git add -A` after a killed run commits none.
A SIGKILL leaves one behind; the next write of the same target removes it (`remove_stale`), so a
crashed run's clutter (`data/.tfrecords.dermai-tmp.*/`, `data/index/.index.csv.dermai-tmp.*`)
goes away when the stage runs again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dermai.errors import DermaiError

TEMP_TAG = "dermai-tmp"  # in every temp's name; one .gitignore pattern matches them all
_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temps for `path` (one place for the naming)."""
    return f".{path.name}.{TEMP_TAG}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale(path: str | Path) -> list[Path]:
    """Delete temps of `path` left by processes that died mid-write; return what was removed.

    Temps of a live process (another writer, or this one) are kept. Names without a pid are
    from an older naming and always stale."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.(?:{TEMP_TAG}\.)?(?:(\d+)\.)?[A-Za-z0-9_]{{8}}(?:\.\w+)*$"
    )
    removed = []
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if not m or (m.group(1) and (int(m.group(1)) == os.getpid() or _alive(int(m.group(1))))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _resolved(path: str | Path) -> Path:
    return Path(os.path.expanduser(str(path))).resolve()


def unsafe_reason(path: str | Path) -> str | None:
    """Why `path` may never be an output folder (a folder that holds the user's work), or None."""
    target = _resolved(path)
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if target == cwd:
        return "is the current folder"
    if target == home:
        return "is the home folder"
    if target == Path(target.anchor):
        return "is the filesystem root"
    if target in cwd.parents:
        return "is a parent of the current folder"
    if target in home.parents:
        return "is a parent of the home folder"
    return None


def refuse_unsafe(path: str | Path, what: str = "--out") -> Path:
    """`path` resolved, or a one-line DermaiError if it is a folder of the user's own."""
    reason = unsafe_reason(path)
    if reason:
        raise DermaiError(
            f"{what} {path} {reason}: refusing to write there; give a folder of its own "
            f"(e.g. {what} results/)"
        )
    return _resolved(path)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds.
    `suffix` is for writers that insist on an extension (Keras: `.keras`, `.weights.h5`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; it replaces `path` whole only if the block succeeds.

    For a stage's own output folder (DVC deletes it before the stage runs); a folder that holds
    the user's work (the current or home folder, or a parent of them) is refused first."""
    refuse_unsafe(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_json(path: str | Path, obj: Any) -> None:
    """Sorted keys and a trailing newline so equal content gives equal bytes."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def write_csv(path: str | Path, df: Any) -> None:
    """Write a pandas DataFrame deterministically (no index, LF line endings)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        df.to_csv(fh, index=False, lineterminator="\n")
