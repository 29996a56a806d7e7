"""Index every raw image: labels, age group, source, group id, SHA1, dHash and size.

Reads folders `<source>/<condition>/<age_group>/<image>`, class folders (`imagefolder`:
`<condition>/[<age_group>/]<image>`, optional sidecar CSV), a manifest CSV (e.g. HAM10000's
metadata.csv), or a dataset as downloaded (ham10000, isic2019, isic2020, isic_archive; see
core.layouts), after one walk of the raw root; when no file fits the layout, the error names the
one the tree looks like. Raw labels go through index.class_map (or `drop`), index.image_types
filters image types; the resolved class list is written for later stages. Every file is decoded
(JPEG draft mode for large ones); each file or listed id that fails is written to the rejects
report with a reason, so index rows + rejects = files found + listed ids without a file."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from dermai import params as params_mod
from dermai.core import layouts
from dermai.core.ages import all_age_groups
from dermai.core.labels import check_label_params
from dermai.core.layouts import Labelling, LayoutError, Task
from dermai.core.schema import META_COLUMNS
from dermai.errors import DermaiError
from dermai.io.atomic import write_json
from dermai.io.images import walk_files
from dermai.io.indexer import build_index
from dermai.io.tables import read_labels_table as labels_table

log = logging.getLogger(__name__)

LAYOUTS = ("folders", "imagefolder", "manifest", *layouts.PRESETS)


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


def plan(
    root: Path, layout: str, prm: params_mod.Params, lab: Labelling
) -> tuple[list[Task], dict[str, int], dict[str, int]]:
    """The tasks of `layout` under `root` (`core.layouts`), after one walk and reading its
    labels tables; the ids listed more than once with the same label; summary counts."""
    cfg, edges, src = prm.index, prm.base.age_edges, root.resolve().name
    files = walk_files(root)

    def looks() -> str:  # only on an error: it scans every walked path
        return f"; the tree looks like {layouts.looks_like(files, lab.ages, lab.exts)}"

    if layout in layouts.HINTS:  # folders, imagefolder
        name, counts = cfg.sidecar.file, {}
        if layout == "folders":
            tasks = layouts.plan_folders(files, lab)
        else:
            table = labels_table(root / name, "sidecar") if name else None
            side = None if table is None else layouts.read_sidecar(table, name, cfg.sidecar)
            files = [f for f in files if f != name]
            tasks, unused = layouts.plan_imagefolder(files, lab, edges, src, side, cfg.group_keys)
            counts = {"sidecar_rows_naming_no_file": unused} if name else {}
        layouts.check_matches(tasks, layout, files, lab)
        return tasks, {}, counts
    if layout == "manifest":
        manifest = root / cfg.manifest.file
        if not manifest.is_file():
            raise DermaiError(f"manifest not found: {manifest} (index.manifest.file){looks()}")
        table = labels_table(manifest, "manifest")
        return (  # with no source column, the raw root's name is the source
            *layouts.plan_manifest(table, manifest.name, files, cfg.manifest, lab, edges, src),
            {},
        )
    preset = layouts.PRESETS[layout]
    try:
        names = [t for t in layouts.preset_tables(preset, files, str(root)) if t]
    except LayoutError as exc:
        raise LayoutError(f"{exc}{looks()}") from exc
    tables = [
        (t, labels_table(root / t, "labels table", sep=layouts.separator(preset, t))) for t in names
    ]
    log.info("layout %s: labels from %s", preset.name, ", ".join(names))
    return (*layouts.plan_preset(preset, tables, files, list(cfg.group_keys), lab, edges), {})


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.index
    root = Path(args.raw or cfg.raw_root)
    layout = args.layout or cfg.layout
    if not root.is_dir():
        raise DermaiError(f"raw root is not a folder: {root} (index.raw_root or --raw)")
    check_label_params(prm.base.classes, cfg.class_map)
    lab = Labelling(
        classes=list(prm.base.classes),
        class_map=dict(cfg.class_map),
        image_types=[t.lower() for t in cfg.image_types],
        ages=set(all_age_groups(prm.base.age_edges)),
        exts={e.lower() for e in cfg.extensions},
    )
    try:
        tasks, repeats, counts = plan(root, layout, prm, lab)
    except LayoutError as exc:
        raise DermaiError(str(exc)) from exc
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
    columns = (*META_COLUMNS, *(cfg.manifest.extra if layout == "manifest" else ()))
    summary = build_index(
        root, tasks, Path(args.out), Path(args.rejects), limits, workers, cfg.chunksize, columns
    )
    summary["layout"] = layout
    if layout == "manifest":
        summary["unlisted"] = summary["rejects_by_reason"].get("unlisted", 0)
    summary["collapsed_repeats"] = len(repeats)
    summary.update(counts)
    classes = layouts.resolve_classes(prm.base.classes, summary["by_condition"])
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
