"""Image hash tables for the leakage audit: read an index/split CSV, or hash a folder on the fly.

A folder is hashed exactly as `dermai index` hashes a file (`core.hashing.inspect`: full decode,
EXIF orientation, SHA1 of the bytes, dHash-64, pHash-256), so an on-the-fly table and an index
CSV of the same images hold the same hashes. Unreadable files are returned as rejects with a
reason, never dropped silently.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dermai.core.hashing import ImageRejected, inspect
from dermai.io.images import DEFAULT_EXTENSIONS, DEFAULT_MAX_PIXELS, read_bytes, walk
from dermai.io.tables import read_table

HASH_COLUMNS = ["image_id", "path", "sha1", "dhash", "phash"]
TABLE_COLUMNS = [*HASH_COLUMNS, "group_id", "groups"]


def read_hash_table(path: Path) -> pd.DataFrame:
    """An index CSV (`dermai index`) or split CSV (data/splits/*.csv) as a hash table."""
    df = read_table(
        path,
        HASH_COLUMNS,
        "index or split CSV",
        hint="written by `dermai index` / `dermai split`",
    )
    for col in ("group_id", "groups"):  # groups: "lesion_id=L1;patient_id=P1" (index.group_keys)
        if col not in df.columns:
            df[col] = ""
    return df[TABLE_COLUMNS].reset_index(drop=True)


def _hash_one(args: tuple[str, str, int]) -> tuple[str, dict | None, str]:
    full, rel, max_pixels = args
    try:
        info = inspect(read_bytes(Path(full)), max_pixels)  # regular files only, capped
    except ImageRejected as exc:
        return rel, None, str(exc)
    return rel, {"sha1": info.sha1, "dhash": info.dhash, "phash": info.phash}, ""


def hash_files(
    root: Path, files: list[Path], max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(hash table, rejects[path, reason]) for `files` under `root`, in the given order."""
    jobs = [
        (str(f), f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f), max_pixels)
        for f in files
    ]
    if workers > 1 and len(jobs) > 64:
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        with ctx.Pool(workers) as pool:
            results = pool.map(_hash_one, jobs, chunksize=32)
    else:
        results = [_hash_one(j) for j in jobs]
    rows = [
        {"image_id": Path(rel).stem, "path": rel, **info, "group_id": "", "groups": ""}
        for rel, info, _ in results
        if info is not None
    ]
    rejects = [{"path": rel, "reason": why} for rel, info, why in results if info is None]
    return (
        pd.DataFrame(rows, columns=TABLE_COLUMNS),
        pd.DataFrame(rejects, columns=["path", "reason"]),
    )


def hash_folder(
    folder: Path,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hash every image file under `folder` (recursively, sorted); see :func:`hash_files`."""
    return hash_files(folder, walk(folder, extensions), max_pixels, workers)


def load(
    source: Path,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A folder is hashed; a file is read as an index or split CSV (no rejects)."""
    if source.is_dir():
        return hash_folder(source, extensions, max_pixels, workers)
    return read_hash_table(source), pd.DataFrame(columns=["path", "reason"])
