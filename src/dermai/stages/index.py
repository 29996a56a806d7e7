"""Index every raw image: labels, age group, source, group id, SHA1, dHash and size.

Reads folders `<source>/<condition>/<age_group>/<image>`, a manifest CSV (e.g. HAM10000's
metadata.csv), or a dataset as downloaded (index.layout: ham10000, isic2019, isic2020,
isic_archive; see core.layouts), after one walk of the raw root. Raw labels go through
index.class_map (or `drop`), index.image_types filters image types; the resolved class list is
written for later stages. Every file is decoded (JPEG draft mode for large ones); each file or
listed id that fails is written to the rejects report with a reason, so index rows + rejects =
files found + listed ids without a file.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from dermai import params as params_mod
from dermai.core import layouts as L
from dermai.core.ages import all_age_groups, bin_age
from dermai.core.hashing import ImageInfo, ImageRejected, inspect
from dermai.core.labels import check_label_params
from dermai.core.layouts import Task
from dermai.core.schema import INDEX_COLUMNS, REJECT_COLUMNS
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json
from dermai.io.images import read_bytes, walk_files

log = logging.getLogger(__name__)

LAYOUT_HINT = "<source>/<condition>/<age_group>/<file>"
LAYOUTS = ("folders", "manifest", *L.PRESETS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (sections: base, index)")
    p.add_argument("--raw", default=None, help="raw root; overrides index.raw_root")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="overrides index.layout")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument(
        "--classes",
        default=None,
        help="write the resolved class list here (JSON); later stages read it",
    )
    p.add_argument("--workers", type=int, default=None, help="overrides index.workers")


@dataclass(frozen=True)
class Labelling:
    """What turns a raw label into a class: the configured classes (empty = as found), the
    class map, the image-type filter and the age groups."""

    classes: list[str]
    class_map: dict[str, str]
    image_types: list[str]
    ages: set[str]
    exts: set[str]

    def apply(self, task: Task) -> Task:
        return L.apply_labels(task, self.classes, self.class_map, self.image_types, self.ages)


def plan_folders(files: list[str], lab: Labelling) -> list[Task]:
    tasks = []
    seen: dict[str, str] = {}
    for rel in files:
        parts = rel.split("/")
        name = parts[-1]
        if name.startswith("."):
            tasks.append(Task(path=rel, reject="hidden file, not an image"))
            continue
        if Path(name).suffix.lower() not in lab.exts:
            tasks.append(
                Task(
                    path=rel,
                    reject=f"unsupported extension '{Path(name).suffix}' "
                    f"(allowed: {sorted(lab.exts)})",
                )
            )
            continue
        if len(parts) != 4:
            tasks.append(Task(path=rel, reject=f"path does not match layout {LAYOUT_HINT}"))
            continue
        source, condition, age_group, _ = parts
        image_id = Path(name).stem
        task = lab.apply(Task(rel, image_id, condition, age_group, source, raw_label=condition))
        if not task.reject and image_id in seen:
            task = replace(task, reject=f"image_id '{image_id}' already used by {seen[image_id]}")
        if not task.reject:
            seen[image_id] = rel
        tasks.append(task)
    return tasks


def read_table(path: Path, sep: str = ",") -> pd.DataFrame:
    """A labels table as strings (blank = ''), or a one-line error (also when it has no rows:
    a header-only table once indexed 0 images and failed two stages later)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except pd.errors.EmptyDataError as exc:
        raise DermaiError(f"{path} is empty: a labels table needs a header and rows") from exc
    except Exception as exc:
        raise DermaiError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    if df.empty:
        raise DermaiError(f"{path} has a header but no rows: no image is labelled")
    return df


def plan_manifest(
    root: Path, files: list[str], cfg: params_mod.ManifestParams, lab: Labelling, edges: list[int]
) -> tuple[list[Task], dict[str, int]]:
    try:
        L.check_manifest(dataclasses.asdict(cfg))
    except L.LayoutError as exc:
        raise DermaiError(str(exc)) from exc
    manifest = root / cfg.file
    if not manifest.is_file():
        raise DermaiError(f"manifest not found: {manifest} (index.manifest.file)")
    df = read_table(manifest)
    mapping = {
        "image_id": cfg.image_id,
        "condition": cfg.condition,
        "age": cfg.age,
        "source": cfg.source,
        "group_id": cfg.group_id,
    }
    missing = [f"{k}->{v}" for k, v in mapping.items() if v and v not in df.columns]
    if missing:
        raise DermaiError(
            f"manifest {manifest.name} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(df.columns)}"
        )
    on_disk = set(files)
    rows: list[Task] = []
    for record in df.to_dict("records"):
        row = {str(k): v for k, v in record.items()}  # read_table: every value a str
        try:
            rel = cfg.path_template.format(**row)
        except KeyError as exc:
            raise DermaiError(
                f"index.manifest.path_template uses column {exc} missing from {manifest.name}"
            ) from exc
        group = row[cfg.group_id].strip() if cfg.group_id else ""
        label = row[cfg.condition].strip().lower()
        rows.append(
            Task(
                path=Path(rel).as_posix(),
                image_id=row[cfg.image_id].strip(),
                condition=label,
                age_group=bin_age(row[cfg.age], edges) if cfg.age else "unknown",
                source=row[cfg.source].strip() if cfg.source else "",
                group_id=group,
                groups=f"{cfg.group_id}={group}" if group else "",
                raw_label=label,
            )
        )
    rows, one_file = L.same_files(rows, files)
    rep = L.repeats(rows)
    first = {t.image_id: pos for pos, t in reversed(list(enumerate(rows)))}
    tasks, listed = [], set()
    for pos, t in enumerate(rows):
        listed.add(t.path)
        if not t.image_id:
            tasks.append(replace(t, reject=f"manifest line {pos + 2}: empty image_id"))
        elif first[t.image_id] != pos:
            continue  # a repeat: collapsed (identical) or rejected once with its first row
        elif t.image_id in rep.conflicts:
            tasks.append(replace(t, reject=L.conflict_reason(rows, t.image_id)))
            continue  # an identical repeat: collapsed (counted in the summary)
        else:
            t = lab.apply(t)
            if not t.reject and t.path not in on_disk:
                t = replace(t, reject="file listed in manifest is missing")
            tasks.append(t)
    # Every file under the root that no row names is a reject (`unlisted`), not ignored.
    tasks += L.unlisted(files, listed, [Path(cfg.file).as_posix()])
    return tasks, {**rep.repeats, **one_file}


def plan_preset(
    root: Path,
    files: list[str],
    preset: L.Preset,
    group_keys: list[str],
    lab: Labelling,
    edges: list[int],
) -> tuple[list[Task], dict[str, int]]:
    table = L.find_table(preset.tables, files)
    if table is None:
        raise DermaiError(
            f"layout {preset.name}: none of {', '.join(preset.tables)} found under {root}"
        )
    extra = L.find_table(preset.extra_tables, files) if preset.extra_tables else None
    try:
        rows = L.records(
            preset,
            read_table(root / table, L.separator(preset, table)),
            read_table(root / extra) if extra else None,
            group_keys,
            edges,
        )
    except L.LayoutError as exc:
        raise DermaiError(f"{exc} ({table})") from exc
    rep = L.repeats([t for t in rows if t.image_id])
    tables = [t for t in (table, extra) if t]
    tasks = [lab.apply(t) for t in L.match(rows, files, lab.exts, preset.suffixes, tables)]
    log.info("layout %s: labels from %s", preset.name, ", ".join(tables))
    return tasks, rep.repeats


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
) -> dict:
    """Decode all tasks in parallel, stream rows to `out` and rejects, return the summary."""
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
        wi.writerow(INDEX_COLUMNS)
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
                        counts["drop_image_type"][task.image_type or L.UNKNOWN_TYPE] += 1
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


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.index
    root = Path(args.raw or cfg.raw_root)
    layout = args.layout or cfg.layout
    if not root.is_dir():
        raise DermaiError(f"raw root is not a folder: {root} (index.raw_root or --raw)")
    check_label_params(prm.base.classes, cfg.class_map)
    bad = (
        sorted(set(cfg.class_map.values()) - {L.DROP} - set(prm.base.classes))
        if prm.base.classes
        else []
    )
    if bad:
        raise DermaiError(
            f"index.class_map maps to {bad}, not in base.classes "
            f"{prm.base.classes} (leave base.classes empty to take them)"
        )
    lab = Labelling(
        classes=list(prm.base.classes),
        class_map=dict(cfg.class_map),
        image_types=[t.lower() for t in cfg.image_types],
        ages=set(all_age_groups(prm.base.age_edges)),
        exts={e.lower() for e in cfg.extensions},
    )
    files = walk_files(root)
    repeats: dict[str, int] = {}
    if layout == "folders":
        tasks = plan_folders(files, lab)
    elif layout == "manifest":
        tasks, repeats = plan_manifest(root, files, cfg.manifest, lab, prm.base.age_edges)
    else:
        tasks, repeats = plan_preset(
            root, files, L.PRESETS[layout], list(cfg.group_keys), lab, prm.base.age_edges
        )
    if not tasks:
        raise DermaiError(f"no files found under {root} (layout {layout})")
    if repeats:
        log.warning(
            "%d image id(s) listed more than once with the same label, collapsed: %s",
            len(repeats),
            ", ".join(sorted(repeats)[:10]),
        )
    workers = args.workers if args.workers is not None else cfg.workers
    workers = workers or os.cpu_count() or 1
    log.info(
        "indexing %d files under %s (%s layout, %d workers)", len(tasks), root, layout, workers
    )
    limits = (cfg.max_pixels, cfg.max_file_bytes, cfg.max_decode_bytes)
    summary = build_index(
        root, tasks, Path(args.out), Path(args.rejects), limits, workers, cfg.chunksize
    )
    summary["layout"] = layout
    if layout == "manifest":
        summary["unlisted"] = summary["rejects_by_reason"].get("unlisted", 0)
    summary["collapsed_repeats"] = len(repeats)
    classes = L.resolve_classes(prm.base.classes, summary["by_condition"])
    summary["classes"] = classes
    if not classes:
        raise DermaiError(f"no image indexed under {root}, so no classes (see {args.rejects})")
    if args.classes:
        write_json(args.classes, {"classes": classes})
    write_json(args.summary, summary)
    log.info(
        "indexed %d, rejected %d of %d files found; classes %s",
        summary["indexed"],
        summary["rejected"],
        summary["files_found"],
        ", ".join(classes),
    )
