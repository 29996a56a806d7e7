"""Finding and reading image files: the one directory walk of `index`, and user-supplied files
for `predict` and `evaluate-external`.

A bad file is a reason string, never an exception that stops a batch: callers report it and go
on. Decoding is `core.hashing.decode` (full decode, EXIF orientation, RGB), the same as indexing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from dermai.core.hashing import ImageRejected, decode
from dermai.params import IndexParams

DEFAULT_EXTENSIONS = tuple(IndexParams().extensions)
DEFAULT_MAX_PIXELS = IndexParams().max_pixels


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


def read(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decoded, EXIF-oriented RGB image; raises ImageRejected with a one-line reason."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageRejected("file not found") from exc
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from exc
    img, _ = decode(data, max_pixels)
    return img


class FolderIndex:
    """Find `image` names from a labels CSV in a folder: by relative path, with or without the
    extension, or by bare file stem when that is unique."""

    def __init__(self, folder: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> None:
        self.folder = folder
        self.by_rel: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in walk(folder, extensions):
            rel = p.relative_to(folder).as_posix()
            self.by_rel[rel] = p
            self.by_rel.setdefault(rel.rsplit(".", 1)[0], p)
            self.by_stem.setdefault(p.stem, []).append(p)

    def files(self) -> list[Path]:
        """Every image file found, in walk order."""
        return [p for ps in self.by_stem.values() for p in ps]

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_stem.values())

    def find(self, name: str) -> Path:
        """The file for `name`; raises ImageRejected (not found / ambiguous)."""
        key = name.strip().replace("\\", "/").lstrip("./")
        if key in self.by_rel:
            return self.by_rel[key]
        direct = self.folder / key
        if direct.is_file():  # named with an extension outside the walked list
            return direct
        hits = self.by_stem.get(Path(key).stem, []) if "/" not in key else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ImageRejected(f"ambiguous: {len(hits)} files named {Path(key).stem}.*")
        raise ImageRejected("file not found")


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
