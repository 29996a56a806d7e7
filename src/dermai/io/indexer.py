"""Decode and hash every planned file in parallel and stream the index and its rejects.

The plan (`core.layouts`: one task per file found or id listed) says what each file is; here each
file is read, fully decoded (`core.hashing.inspect`: JPEG draft mode for large ones) and hashed
in a worker pool, and written in task order as an index row or a reject with its reason, so
index rows + rejects = tasks.
"""

from __future__ import annotations

import collections
import csv
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from dermai.core.hashing import ImageInfo, ImageRejected, inspect
from dermai.core.layouts import UNKNOWN_TYPE, Task
from dermai.core.schema import INDEX_COLUMNS, META_COLUMNS, REJECT_COLUMNS
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open
from dermai.io.images import read_bytes

_LIMITS = (0, 0, 0)  # max pixels, max file bytes, decode budget
_ROOT = Path(".")


def _init_worker(root: str, limits: tuple[int, int, int]) -> None:
    global _ROOT, _LIMITS
    _ROOT, _LIMITS = Path(root), limits


def _process(task: Task) -> tuple[Task, ImageInfo | None]:
    """Worker: decode and hash one file, or say why not."""
    if task.reject:
        return task, None
    max_pixels, max_bytes, budget = _LIMITS
    try:
        info = inspect(read_bytes(_ROOT / task.path, max_bytes), max_pixels, budget=budget)
    except ImageRejected as exc:
        return replace(task, reject=str(exc)), None
    except Exception as exc:  # a decoder bug must become a report line, not a lost file
        return replace(task, reject=f"unexpected decode failure: {type(exc).__name__}: {exc}"), None
    return task, info


def build_index(
    root: Path,
    tasks: list[Task],
    out: Path,
    rejects: Path,
    limits: tuple[int, int, int],
    workers: int,
    chunksize: int,
    meta_columns: Sequence[str] = META_COLUMNS,
) -> dict:
    """Decode all tasks in parallel, stream rows to `out` and rejects, return the summary.
    The tasks' metadata values (when any task has them) go in `meta_columns`, after the
    index's own columns."""
    counts: dict[str, collections.Counter] = {
        k: collections.Counter()
        for k in (
            "condition",
            "age_group",
            "source",
            "reason",
            "image_type",
            "class_map",
            "drop_image_type",
        )
    }
    n_rows = n_rejects = 0
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    with (
        atomic_open(out, "w", newline="", encoding="utf-8") as fi,
        atomic_open(rejects, "w", newline="", encoding="utf-8") as fr,
    ):
        wi = csv.writer(fi, lineterminator="\n")
        wr = csv.writer(fr, lineterminator="\n")
        with_meta = any(t.meta for t in tasks)  # a sidecar's columns, only when it gave them
        wi.writerow([*INDEX_COLUMNS, *(meta_columns if with_meta else ())])
        wr.writerow(REJECT_COLUMNS)
        results: Iterator[tuple[Task, ImageInfo | None]]
        if workers == 1:
            _init_worker(str(root), limits)
            results = map(_process, tasks)
            pool = None
        else:
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(str(root), limits))
            results = pool.imap(_process, tasks, chunksize=chunksize)
        try:
            for task, info in tqdm(
                results, total=len(tasks), desc="index", unit="img", mininterval=1.0, disable=None
            ):
                if info is None:
                    wr.writerow([task.path, task.reject, task.image_id, task.condition])
                    if task.drop == "class_map":
                        counts["class_map"][task.raw_label] += 1
                        counts["reason"]["dropped by index.class_map"] += 1
                    elif task.drop == "image_type":
                        counts["drop_image_type"][task.image_type or UNKNOWN_TYPE] += 1
                        counts["reason"]["dropped by index.image_types"] += 1
                    else:
                        counts["reason"][task.reject.split(":")[0].split(" (")[0]] += 1
                    n_rejects += 1
                    continue
                wi.writerow(
                    [
                        task.image_id,
                        task.path,
                        task.condition,
                        task.age_group,
                        task.source,
                        task.group_id,
                        info.sha1,
                        info.dhash,
                        info.phash,
                        info.width,
                        info.height,
                        info.format,
                        info.bytes,
                        task.groups,
                        task.image_type,
                        *((task.meta or ("",) * len(meta_columns)) if with_meta else ()),
                    ]
                )
                for key in ("condition", "age_group", "source", "image_type"):
                    counts[key][getattr(task, key)] += 1
                n_rows += 1
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    if n_rows + n_rejects != len(tasks):  # pragma: no cover - an invariant, not a branch
        raise DermaiError(f"index lost files: {n_rows} rows + {n_rejects} rejects != {len(tasks)}")
    return {
        "files_found": len(tasks),
        "indexed": n_rows,
        "rejected": n_rejects,
        "rejects_by_reason": dict(sorted(counts["reason"].items())),
        "by_condition": dict(sorted(counts["condition"].items())),
        "by_age_group": dict(sorted(counts["age_group"].items())),
        "by_source": dict(sorted(counts["source"].items())),
        "by_image_type": dict(sorted(counts["image_type"].items())),
        "dropped_by_class_map": dict(sorted(counts["class_map"].items())),
        "dropped_by_image_type": dict(sorted(counts["drop_image_type"].items())),
    }
