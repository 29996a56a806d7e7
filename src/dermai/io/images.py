"""Finding and reading image files: the one directory walk of `index`, and user-supplied files
for `predict` and `evaluate-external`.

A bad file is a reason string, never an exception that stops a batch: callers report it and go
on. Decoding is `core.hashing.decode` (full decode, EXIF orientation, RGB), the same as indexing.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from dermai.core.hashing import ImageRejected, decode
from dermai.core.labels import normalise_id
from dermai.params import IndexParams

DEFAULT_EXTENSIONS = tuple(IndexParams().extensions)
DEFAULT_MAX_PIXELS = IndexParams().max_pixels
DEFAULT_MAX_FILE_BYTES = IndexParams().max_file_bytes
DEFAULT_DECODE_BUDGET = IndexParams().max_decode_bytes


def walk(folder: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Image files under `folder`, recursively, in sorted order (hidden entries skipped)."""
    exts = {e.lower() for e in extensions}
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and Path(f).suffix.lower() in exts:
                out.append(Path(root) / f)
    return out


def expand(
    inputs: Iterable[str | Path], extensions: Iterable[str] = DEFAULT_EXTENSIONS
) -> list[Path]:
    """Files as given (whatever their extension) and image files found under directories.

    A path that does not exist is kept, so the caller reports it like any unreadable image.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        out.extend(walk(p, extensions) if p.is_dir() else [p])
    return out


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or ImageRejected with the reason.

    Only regular files are opened (a FIFO named .jpg would block for ever, a symlink to
    /dev/zero would fill memory): the type is checked before opening, and again on the open
    descriptor (opened non-blocking), so a file swapped in between cannot slip through."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRejected(f"not a regular file: {_kind(st.st_mode)}")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as exc:
        raise ImageRejected("file not found") from exc
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRejected(f"not a regular file: {_kind(st.st_mode)}")
        if st.st_size > max_bytes:
            raise ImageRejected(f"file too large: {st.st_size:,} bytes > limit {max_bytes:,}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while being read
        raise ImageRejected(f"file too large: more than {max_bytes:,} bytes")
    return data


def read(
    path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    budget: int = DEFAULT_DECODE_BUDGET,
) -> Image.Image:
    """Decoded, EXIF-oriented RGB image; raises ImageRejected with a one-line reason."""
    img, _ = decode(read_bytes(path, max_bytes), max_pixels, budget=budget)
    return img


class FolderIndex:
    """Find `image` names from a labels CSV in a folder: by relative path, with or without the
    extension, or by bare file stem when that is unique.

    Names are normalised first (`core.labels.normalise_id`: NFC, separators, `./`, `..`), so
    `mel_12`, `mel_12.jpg` and `./mel_12.jpg` find the same file; a name that leaves the
    folder, or a file that resolves outside it through a symlink, is rejected with the reason.
    """

    def __init__(self, folder: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> None:
        self.folder = folder
        self.root = os.path.realpath(folder)
        self.by_rel: dict[str, Path] = {}
        self.by_base: dict[str, list[Path]] = {}  # relative path without its extension
        self.by_stem: dict[str, list[Path]] = {}
        for p in walk(folder, extensions):
            rel = unicodedata.normalize("NFC", p.relative_to(folder).as_posix())
            self.by_rel[rel] = p
            self.by_base.setdefault(rel.rsplit(".", 1)[0], []).append(p)
            self.by_stem.setdefault(unicodedata.normalize("NFC", p.stem), []).append(p)

    def files(self) -> list[Path]:
        """Every image file found, in walk order."""
        return [p for ps in self.by_stem.values() for p in ps]

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_stem.values())

    def find(self, name: str) -> Path:
        """The file for `name`, inside the folder; raises ImageRejected (not found, ambiguous,
        outside the folder)."""
        try:
            key = normalise_id(name)
        except ValueError as exc:
            raise ImageRejected(str(exc)) from exc
        path = self.by_rel.get(key)
        hits = [] if path else self.by_base.get(key, [])
        if not path and not hits and os.path.lexists(self.folder / key):
            # an extension outside the walked list, or not a file (read says which)
            path = self.folder / key
        if not path and not hits and "/" not in key:
            hits = self.by_stem.get(Path(key).stem, [])
        if not path:
            if len(hits) > 1:
                shown = ", ".join(sorted(p.relative_to(self.folder).as_posix() for p in hits)[:3])
                raise ImageRejected(f"ambiguous: {len(hits)} files match {key} ({shown})")
            if not hits:
                raise ImageRejected("file not found")
            path = hits[0]
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.root]) != self.root:
            raise ImageRejected(f"resolves outside the images folder (to {real})")
        return path

    def key(self, path: Path) -> str:
        """One key per file on disk: two names (or two links) for one file share it."""
        return os.path.realpath(path)


def walk_files(root: Path) -> list[str]:
    """All files under root, relative POSIX paths, sorted: the one directory walk per run
    (os.walk reads entry types from scandir, so there is no stat per file)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        out.extend(prefix + name for name in filenames)
    return sorted(out)
