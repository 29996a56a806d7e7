"""Index every raw image: labels, age group, source, group id, SHA1, dHash and size.

Reads folders `<source>/<condition>/<age_group>/<image>` or a manifest CSV (e.g. HAM10000's
metadata.csv). Every file is fully decoded; each one that fails is written to the rejects report
with a reason, so index rows + rejects = files found.
"""

from __future__ import annotations

import argparse
import collections
import csv
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dermai import params as params_mod
from dermai.core.ages import all_age_groups, bin_age
from dermai.core.hashing import ImageRejected, inspect
from dermai.core.schema import INDEX_COLUMNS, REJECT_COLUMNS
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json

log = logging.getLogger(__name__)

LAYOUT_HINT = "<source>/<condition>/<age_group>/<file>"


@dataclass(frozen=True)
class Task:
    """One file found: its labels, or the reason it was rejected before decoding."""

    path: str  # relative to the raw root, POSIX separators
    image_id: str = ""
    condition: str = ""
    age_group: str = ""
    source: str = ""
    group_id: str = ""
    reject: str = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (sections: base, index)")
    p.add_argument("--raw", default=None, help="raw root; overrides index.raw_root")
    p.add_argument("--layout", choices=["folders", "manifest"], default=None,
                   help="overrides index.layout")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--workers", type=int, default=None, help="overrides index.workers")


def _walk(root: Path) -> list[str]:
    """All files under root, relative POSIX paths, sorted (deterministic row order)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def _check_labels(task: Task, classes: set[str], ages: set[str], exts: set[str]) -> Task:
    reason = ""
    if Path(task.path).name.startswith("."):
        reason = "hidden file, not an image"
    elif Path(task.path).suffix.lower() not in exts:
        reason = f"unsupported extension '{Path(task.path).suffix}' (allowed: {sorted(exts)})"
    elif task.condition not in classes:
        reason = f"label '{task.condition}' not in configured classes {sorted(classes)}"
    elif task.age_group not in ages:
        reason = f"age group '{task.age_group}' not in configured age groups {sorted(ages)}"
    if reason:
        return Task(**{**task.__dict__, "reject": reason})
    return task


def plan_folders(root: Path, classes: set[str], ages: set[str], exts: set[str]) -> list[Task]:
    tasks = []
    seen: dict[str, str] = {}
    for rel in _walk(root):
        parts = rel.split("/")
        if len(parts) != 4:
            tasks.append(Task(path=rel, reject=f"path does not match layout {LAYOUT_HINT}"))
            continue
        source, condition, age_group, name = parts
        image_id = Path(name).stem
        task = Task(rel, image_id, condition, age_group, source, "")
        task = _check_labels(task, classes, ages, exts)
        if not task.reject and image_id in seen:
            task = Task(**{**task.__dict__,
                           "reject": f"image_id '{image_id}' already used by {seen[image_id]}"})
        if not task.reject:
            seen[image_id] = rel
        tasks.append(task)
    return tasks


def plan_manifest(
    root: Path, cfg: params_mod.ManifestParams, classes: set[str], edges: list[int],
    exts: set[str],
) -> list[Task]:
    import pandas as pd

    manifest = root / cfg.file
    if not manifest.is_file():
        raise DermaiError(f"manifest not found: {manifest} (index.manifest.file)")
    try:
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DermaiError(f"cannot read manifest {manifest}: {exc}") from exc
    mapping = {"image_id": cfg.image_id, "condition": cfg.condition, "age": cfg.age,
               "source": cfg.source, "group_id": cfg.group_id}
    missing = [f"{k}->{v}" for k, v in mapping.items() if v and v not in df.columns]
    if missing:
        raise DermaiError(
            f"manifest {manifest.name} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(df.columns)}"
        )
    ages = set(all_age_groups(edges))
    tasks = []
    listed: set[str] = set()
    seen: dict[str, int] = {}
    for lineno, row in enumerate(df.to_dict("records"), start=2):
        try:
            rel = cfg.path_template.format(**row)
        except KeyError as exc:
            raise DermaiError(
                f"index.manifest.path_template uses column {exc} missing from {manifest.name}"
            ) from exc
        rel = Path(rel).as_posix()
        listed.add(rel)
        task = Task(
            path=rel,
            image_id=row[cfg.image_id].strip(),
            condition=row[cfg.condition].strip().lower(),
            age_group=bin_age(row[cfg.age], edges) if cfg.age else "unknown",
            source=row[cfg.source].strip() if cfg.source else "",
            group_id=row[cfg.group_id].strip() if cfg.group_id else "",
        )
        task = _check_labels(task, classes, ages, exts)
        if not task.reject and not task.image_id:
            task = Task(**{**task.__dict__, "reject": f"manifest line {lineno}: empty image_id"})
        if not task.reject and task.image_id in seen:
            task = Task(**{**task.__dict__, "reject": (
                f"manifest line {lineno}: image_id '{task.image_id}' repeats line "
                f"{seen[task.image_id]}")})
        if not task.reject and not (root / rel).is_file():
            task = Task(**{**task.__dict__, "reject": "file listed in manifest is missing"})
        if not task.reject:
            seen[task.image_id] = lineno
        tasks.append(task)
    # Images lying in the manifest's image folders but not listed are reported, not ignored.
    folders = {str(Path(t).parent) for t in listed}
    for folder in sorted(folders):
        if not (root / folder).is_dir():
            continue
        for rel in _walk(root / folder):
            full = (Path(folder) / rel).as_posix()
            if full not in listed:
                tasks.append(Task(path=full, reject="file not listed in manifest"))
    return tasks


_MAX_PIXELS = 0
_ROOT = Path(".")


def _init_worker(root: str, max_pixels: int) -> None:
    global _ROOT, _MAX_PIXELS
    _ROOT, _MAX_PIXELS = Path(root), max_pixels


def _process(task: Task) -> tuple[Task, dict | None]:
    """Worker: decode and hash one file, or say why not."""
    if task.reject:
        return task, None
    try:
        data = (_ROOT / task.path).read_bytes()
    except OSError as exc:
        return Task(**{**task.__dict__, "reject": f"cannot read file: {exc.strerror}"}), None
    try:
        info = inspect(data, _MAX_PIXELS)
    except ImageRejected as exc:
        return Task(**{**task.__dict__, "reject": str(exc)}), None
    except Exception as exc:  # a decoder bug must become a report line, not a lost file
        return Task(**{**task.__dict__,
                       "reject": f"unexpected decode failure: {type(exc).__name__}: {exc}"}), None
    return task, info.__dict__


def build_index(
    root: Path, tasks: list[Task], out: Path, rejects: Path, max_pixels: int, workers: int,
    chunksize: int,
) -> dict:
    """Decode all tasks in parallel, stream rows to `out` and rejects, return the summary."""
    counts: dict[str, collections.Counter] = {
        k: collections.Counter() for k in ("condition", "age_group", "source", "reason")
    }
    n_rows = n_rejects = 0
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    with atomic_open(out, "w", newline="", encoding="utf-8") as fi, \
            atomic_open(rejects, "w", newline="", encoding="utf-8") as fr:
        wi = csv.writer(fi, lineterminator="\n")
        wr = csv.writer(fr, lineterminator="\n")
        wi.writerow(INDEX_COLUMNS)
        wr.writerow(REJECT_COLUMNS)
        if workers == 1:
            _init_worker(str(root), max_pixels)
            results = map(_process, tasks)
            pool = None
        else:
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(str(root), max_pixels))
            results = pool.imap(_process, tasks, chunksize=chunksize)
        try:
            for task, info in tqdm(results, total=len(tasks), desc="index", unit="img",
                                   mininterval=1.0, disable=None):
                if info is None:
                    wr.writerow([task.path, task.reject, task.image_id, task.condition])
                    counts["reason"][task.reject.split(":")[0].split(" (")[0]] += 1
                    n_rejects += 1
                    continue
                wi.writerow([task.image_id, task.path, task.condition, task.age_group,
                             task.source, task.group_id, info["sha1"], info["dhash"],
                             info["phash"], info["width"], info["height"], info["format"],
                             info["bytes"]])
                for key in ("condition", "age_group", "source"):
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
    }


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.index
    root = Path(args.raw or cfg.raw_root)
    layout = args.layout or cfg.layout
    if not root.is_dir():
        raise DermaiError(f"raw root is not a folder: {root} (index.raw_root or --raw)")
    classes = set(prm.base.classes)
    exts = {e.lower() for e in cfg.extensions}
    if layout == "folders":
        tasks = plan_folders(root, classes, set(all_age_groups(prm.base.age_edges)), exts)
    else:
        tasks = plan_manifest(root, cfg.manifest, classes, prm.base.age_edges, exts)
    if not tasks:
        raise DermaiError(f"no files found under {root} (layout {layout})")
    workers = args.workers if args.workers is not None else cfg.workers
    workers = workers or os.cpu_count() or 1
    log.info("indexing %d files under %s (%s layout, %d workers)", len(tasks), root, layout,
             workers)
    summary = build_index(root, tasks, Path(args.out), Path(args.rejects), cfg.max_pixels,
                          workers, cfg.chunksize)
    summary["layout"] = layout
    write_json(args.summary, summary)
    log.info("indexed %d, rejected %d of %d files found", summary["indexed"],
             summary["rejected"], summary["files_found"])
