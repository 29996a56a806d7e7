"""Evaluate a model on any labelled image folder with the same metrics as `dermai evaluate`.

Labels come from a CSV, either ISIC-style one-hot (`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`) or
plain `image,label`; class names match the model's case-insensitively and `image` may omit
the file extension. Optional `age_group` / `source` columns give subgroup metrics. Images are
decoded with EXIF orientation and fitted like the training data; unreadable or missing images
are reported and skipped. The model's saved temperature is used; ECE is shown with and without
it. `--exclude-duplicates-of <index.csv>` drops (and lists in excluded_duplicates.csv) every
image that is an exact or perceptual duplicate of an indexed training image, with the `dedup`
rules, so the external score is known to be clean. Not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dermai import params as params_mod
from dermai.core.hashing import ImageRejected
from dermai.errors import DermaiError
from dermai.io.atomic import write_csv
from dermai.io.images import FolderIndex, read
from dermai.io.pipeline import pipeline_file
from dermai.runtime import bundle as bundle_mod
from dermai.runtime.gradcam import GradCam
from dermai.runtime.report import EvalSettings, live_session, publish, settings_from

log = logging.getLogger(__name__)

NAME = "external"
BATCH = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file (evaluate.*, base.seed, index.extensions); optional",
    )
    bundle_mod.add_model_arguments(p)
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument(
        "--labels", required=True, help="CSV: image,<one-hot class columns> or image,label"
    )
    p.add_argument(
        "--out",
        default="reports/external",
        help="output folder: metrics.json, plots/, report, predictions, errors/",
    )
    p.add_argument(
        "--exclude-duplicates-of",
        default=None,
        metavar="INDEX_CSV",
        help="drop images duplicating any image of this index/split CSV "
        "(dedup.* thresholds); listed in <out>/excluded_duplicates.csv",
    )


def _settings(params_path: str) -> tuple[EvalSettings, list[str], int]:
    prm = params_mod.load_or_defaults(params_path)
    return settings_from(prm), list(prm.index.extensions), prm.index.max_pixels


def load_images(
    bundle: Any,
    folder: Path,
    names: list[str],
    extensions: list[str],
    max_pixels: int,
) -> tuple[list[int], np.ndarray, list[dict[str, str]], list[str]]:
    """(row indices kept, N x H x W x 3 uint8 fitted images, skipped rows with reasons,
    images in the folder that no labels row names)."""
    from tqdm import tqdm

    index = FolderIndex(folder, extensions)
    kept, arrays, skipped, used = [], [], [], set()
    for i, name in enumerate(
        tqdm(names, unit="img", file=sys.stderr, desc="read", disable=len(names) < 200)
    ):
        try:
            path = index.find(name)
            used.add(path)
            arr = bundle.prepare(read(path, max_pixels))
        except ImageRejected as exc:
            print(f"dermai evaluate-external: skipped {name}: {exc}", file=sys.stderr)
            skipped.append({"image": name, "error": str(exc)})
            continue
        kept.append(i)
        arrays.append(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    shape = (0, bundle.height, bundle.width, 3)
    unlabelled = sorted(p.relative_to(folder).as_posix() for p in index.files() if p not in used)
    return (kept, (np.stack(arrays) if arrays else np.zeros(shape, np.uint8)), skipped, unlabelled)


def keras_gradcam(bundle: Any) -> Any | None:
    """Grad-CAM needs the Keras graph; a .tflite gets a gallery without heatmaps."""
    if bundle.keras_model is None:
        return None

    return GradCam(bundle.keras_model)


def run(args: argparse.Namespace) -> None:
    import pandas as pd

    from dermai.core import labels

    settings, extensions, max_pixels = _settings(args.params)
    folder, labels_path = Path(args.images), Path(args.labels)
    if not folder.is_dir():
        raise DermaiError(f"images folder not found: {folder}")
    if not labels_path.is_file():
        raise DermaiError(f"labels CSV not found: {labels_path}")
    args.model = pipeline_file("train", "--model", args.model)
    df = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    bundle = bundle_mod.load(
        args.model, train_params=args.train_params, calibration=args.calibration, guard=False
    )
    classes = list(bundle.classes)
    names, y, fmt = labels.parse(df, classes)
    rows, repeats = labels.dedupe(names, y, classes, f"labels CSV {labels_path.name}")
    if repeats:
        log.warning(
            "%d image(s) listed more than once with the same label, counted once: %s",
            len(repeats),
            ", ".join(sorted(repeats)[:10]),
        )
    df, names, y = df.iloc[rows].reset_index(drop=True), [names[i] for i in rows], y[rows]
    log.info("%d labelled images (%s format) for classes %s", len(names), fmt, ", ".join(classes))
    out = Path(args.out)
    excluded: set[int] = set()
    if args.exclude_duplicates_of:
        from dermai.commands.audit import training_duplicates

        excluded = training_duplicates(
            folder,
            names,
            Path(args.exclude_duplicates_of),
            args.params,
            extensions,
            max_pixels,
            out / "excluded_duplicates.csv",
        )
    kept, images, skipped, unlabelled = load_images(bundle, folder, names, extensions, max_pixels)
    write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=["image", "error"]))
    write_csv(out / "unlabelled.csv", pd.DataFrame({"image": unlabelled}))
    if unlabelled:
        log.warning(
            "%d image(s) in %s have no row in the labels CSV (listed in %s)",
            len(unlabelled),
            folder,
            out / "unlabelled.csv",
        )
    if excluded:
        keep = np.array([i not in excluded for i in kept], dtype=bool)
        if kept and not keep.any():
            raise DermaiError(
                f"every readable image duplicates an image of "
                f"{args.exclude_duplicates_of} (see {out})"
            )
        kept, images = [i for i in kept if i not in excluded], images[keep]
    if not kept:
        raise DermaiError(
            f"none of the {len(names)} labelled images could be read (see {out / 'skipped.csv'})"
        )
    if skipped:
        log.warning(
            "skipped %d of %d images (listed in %s)", len(skipped), len(names), out / "skipped.csv"
        )
    logits = np.concatenate(
        [
            bundle.analyse(images[s : s + BATCH]).scored  # with the calibration's TTA
            for s in range(0, len(images), BATCH)
        ]
    )
    groups = {k: [v[i] for i in kept] for k, v in labels.groups(df).items()}
    live = live_session(out)
    publish(
        NAME,
        y=y[kept],
        logits=logits,
        classes=classes,
        temperature=bundle.temperature,
        ids=[names[i] for i in kept],
        groups=groups,
        live=live,
        out_dir=out,
        settings=settings,
        image_of=lambda i: images[i],
        cam=keras_gradcam(bundle),
        errors_dir=out / "errors",
    )
    live.summary[NAME]["skipped"] = len(skipped)
    live.summary[NAME]["unlabelled_images"] = len(unlabelled)
    live.summary[NAME]["collapsed_repeats"] = len(repeats)
    if args.exclude_duplicates_of:
        live.summary[NAME]["excluded_duplicates"] = len(excluded)
    live.end()
    log.info("wrote %s", out)
