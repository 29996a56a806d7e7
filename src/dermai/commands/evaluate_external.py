"""Evaluate a model on any labelled image folder with the same metrics as `dermai evaluate`.

Labels come from a CSV, either ISIC-style one-hot (`image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`) or
plain `image,label`; class names match the model's case-insensitively and `image` may omit
the file extension. Optional `age_group` / `source` columns give subgroup metrics. Images are
decoded with EXIF orientation and fitted like the training data; unreadable or missing images
are reported and skipped. The model's saved temperature is used; ECE is shown with and without
it. `--exclude-duplicates-of <index.csv>` drops (and lists in excluded_duplicates.csv) every
image that is an exact or perceptual duplicate of an indexed training image, with the `dedup`
rules, so the external score is known to be clean. The model's out-of-distribution guard is
applied too: `ood.csv` lists each image's score and decision, and the summary counts the
refusals (the metrics still cover every image). Not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dermai import params as params_mod
from dermai.core import labels
from dermai.core.hashing import ImageRejected
from dermai.errors import DermaiError
from dermai.io.atomic import write_csv
from dermai.io.images import FolderIndex, read
from dermai.io.outdir import OutputDir, check_output_dir, output_dir
from dermai.io.pipeline import pipeline_file
from dermai.runtime import bundle as bundle_mod
from dermai.runtime.gradcam import GradCam
from dermai.runtime.report import EvalSettings, live_session, publish, settings_from

log = logging.getLogger(__name__)

NAME = "external"
COMMAND = "dermai evaluate-external"  # the owner named in its output folder's marker
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
        help="output folder: metrics.json, plots/, report, predictions, errors/; new, empty, "
        "or an earlier evaluate-external's (its own files are replaced, others left alone)",
    )
    p.add_argument(
        "--exclude-duplicates-of",
        default=None,
        metavar="INDEX_CSV",
        help="drop images duplicating any image of this index/split CSV "
        "(dedup.* thresholds); listed in <out>/excluded_duplicates.csv",
    )


def _settings(params_path: str) -> tuple[EvalSettings, list[str], tuple[int, int, int]]:
    """Evaluation settings, image extensions, and (max pixels, max file bytes, decode budget)."""
    prm = params_mod.load_or_defaults(params_path)
    ix = prm.index
    limits = (ix.max_pixels, ix.max_file_bytes, ix.max_decode_bytes)
    return settings_from(prm), list(ix.extensions), limits


def resolve(
    index: FolderIndex, names: list[str], row_labels: list[str], where: str
) -> tuple[list[int], list[Path | str], dict[str, list[str]]]:
    """Find every labelled name in the indexed folder once: (rows kept, per kept row its file or the
    reason it has none, collapsed repeats: a kept name -> the other names of its file).

    Names that resolve to one file (`mel_12`, `mel_12.jpg`, `./mel_12.jpg`, or two symlinks)
    are one image: with one label they collapse to the first row, with different labels they
    are an error naming them, as a name listed twice is."""
    keys: list[str] = []
    found: list[Path | str] = []
    for name in names:
        try:
            path = index.find(name)
            keys.append(index.key(path))
            found.append(path)
        except ImageRejected as exc:
            try:
                keys.append("name:" + labels.normalise_id(name))
            except ValueError:
                keys.append("name:" + name.strip())
            found.append(str(exc))
    rep = labels.check_repeats(keys, row_labels)
    names_of: dict[str, list[str]] = {}
    for name, key in zip(names, keys, strict=True):
        if name not in names_of.setdefault(key, []):
            names_of[key].append(name)
    if rep.conflicts:
        shown = {" = ".join(names_of[k]): v for k, v in rep.conflicts.items()}
        raise DermaiError(labels.conflict_message(shown, where))
    rows = sorted(rep.keep.values())
    repeats = {names[rep.keep[k]]: names_of[k][1:] for k in rep.repeats}
    return rows, [found[i] for i in rows], repeats


def load_images(
    bundle: Any,
    index: FolderIndex,
    names: list[str],
    found: list[Path | str],
    limits: tuple[int, int, int],
) -> tuple[list[int], np.ndarray, list[dict[str, str]], list[str]]:
    """(row indices kept, N x H x W x 3 uint8 fitted images, skipped rows with reasons,
    images in the folder that no labels row names). `index`: the folder walked once by
    `resolve`'s caller; `found`: per row its file or the reason it has none; `limits`: max
    pixels, max file bytes, decode budget."""
    from tqdm import tqdm

    max_pixels, max_bytes, budget = limits
    kept, arrays, skipped, used = [], [], [], set()
    for i, (name, path) in enumerate(
        tqdm(
            list(zip(names, found, strict=True)),
            unit="img",
            file=sys.stderr,
            desc="read",
            disable=len(names) < 200,
        )
    ):
        try:
            if isinstance(path, str):
                raise ImageRejected(path)
            used.add(os.path.realpath(path))
            img = read(path, max_pixels, max_bytes=max_bytes, budget=budget)
            arr = bundle.prepare(img)
        except ImageRejected as exc:
            print(f"dermai evaluate-external: skipped {name}: {exc}", file=sys.stderr)
            skipped.append({"image": name, "error": str(exc)})
            continue
        kept.append(i)
        arrays.append(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    shape = (0, bundle.height, bundle.width, 3)
    unlabelled = sorted(
        p.relative_to(index.folder).as_posix()
        for p in index.files()
        if os.path.realpath(p) not in used
    )
    return (kept, (np.stack(arrays) if arrays else np.zeros(shape, np.uint8)), skipped, unlabelled)


def guard_refusals(
    bundle: Any, analyses: list[Any], ids: list[str], out: Path, shown: Path
) -> np.ndarray | None:
    """The images the model's OOD guard refuses (predict and serve would give them no answer),
    listed in <out>/ood.csv with their scores; None without a guard. The metrics still cover
    every image: they measure the classifier, the refusals measure the guard."""
    import pandas as pd

    if bundle.guard is None:
        return None
    scores = np.concatenate([a.ood_scores for a in analyses])
    refused = ~np.concatenate([a.in_distribution for a in analyses])
    write_csv(
        out / "ood.csv",
        pd.DataFrame({"image": ids, "in_distribution": ~refused, "score": scores}),
    )
    log.info(
        "the OOD guard (%s) refuses %d of %d images (%.1f%%; listed in %s)",
        bundle.guard.method,
        refused.sum(),
        len(refused),
        100 * refused.mean(),
        shown / "ood.csv",
    )
    return refused


def keras_gradcam(bundle: Any) -> Any | None:
    """Grad-CAM needs the Keras graph; a .tflite gets a gallery without heatmaps."""
    if bundle.keras_model is None:
        return None
    return GradCam(bundle.keras_model)


def run(args: argparse.Namespace) -> None:
    import pandas as pd

    check_output_dir(args.out, COMMAND)  # before any work: a refused folder fails at once
    folder, labels_path = Path(args.images), Path(args.labels)
    if not folder.is_dir():
        raise DermaiError(f"images folder not found: {folder}")
    if not labels_path.is_file():
        raise DermaiError(f"labels CSV not found: {labels_path}")
    args.model = pipeline_file("train", "--model", args.model)
    df = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    bundle = bundle_mod.load(
        args.model, train_params=args.train_params, calibration=args.calibration
    )
    classes = list(bundle.classes)
    names, y, fmt = labels.parse(df, classes)
    _, extensions, _ = _settings(args.params)
    index = FolderIndex(folder, extensions)  # walked once: resolve and load_images share it
    rows, found, repeats = resolve(
        index, names, [classes[int(c)] for c in y], f"labels CSV {labels_path.name}"
    )
    if repeats:
        log.warning(
            "%d image(s) listed more than once (by one name or several) with the same label, "
            "counted once: %s",
            len(repeats),
            ", ".join(
                f"{k} (also {', '.join(v)})" if v else k for k, v in sorted(repeats.items())[:10]
            ),
        )
    df, names, y = df.iloc[rows].reset_index(drop=True), [names[i] for i in rows], y[rows]
    log.info("%d labelled images (%s format) for classes %s", len(names), fmt, ", ".join(classes))
    with output_dir(args.out, COMMAND) as target:
        _evaluate(args, target, index, df, names, found, y, repeats, bundle, classes)
    log.info("wrote %s", args.out)


def _evaluate(
    args: argparse.Namespace,
    target: OutputDir,
    index: FolderIndex,
    df: Any,
    names: list[str],
    found: list[Path | str],
    y: np.ndarray,
    repeats: dict[str, list[str]],
    bundle: Any,
    classes: list[str],
) -> None:
    """Everything written goes to `target.staging`; messages name the final folder."""
    import pandas as pd

    settings, _, limits = _settings(args.params)
    max_pixels = limits[0]
    out, shown = target.staging, Path(args.out)
    excluded: set[int] = set()
    if args.exclude_duplicates_of:
        from dermai.commands.audit import training_duplicates

        excluded = training_duplicates(
            index.folder,
            names,
            found,
            Path(args.exclude_duplicates_of),
            args.params,
            max_pixels,
            out / "excluded_duplicates.csv",
        )
    kept, images, skipped, unlabelled = load_images(bundle, index, names, found, limits)
    write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=["image", "error"]))
    write_csv(out / "unlabelled.csv", pd.DataFrame({"image": unlabelled}))
    if unlabelled:
        log.warning(
            "%d image(s) in %s have no row in the labels CSV (listed in %s)",
            len(unlabelled),
            index.folder,
            shown / "unlabelled.csv",
        )
    if excluded:
        keep = np.array([i not in excluded for i in kept], dtype=bool)
        if kept and not keep.any():
            target.commit()
            raise DermaiError(
                f"every readable image duplicates an image of "
                f"{args.exclude_duplicates_of} (see {shown})"
            )
        kept, images = [i for i in kept if i not in excluded], images[keep]
    if not kept:
        target.commit()
        raise DermaiError(
            f"none of the {len(names)} labelled images could be read (see {shown / 'skipped.csv'})"
        )
    if skipped:
        log.warning(
            "skipped %d of %d images (listed in %s)",
            len(skipped),
            len(names),
            shown / "skipped.csv",
        )
    analyses = [bundle.analyse(images[s : s + BATCH]) for s in range(0, len(images), BATCH)]
    logits = np.concatenate([a.scored for a in analyses])  # with the calibration's TTA
    refused = guard_refusals(bundle, analyses, [names[i] for i in kept], out, shown)
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
    if refused is not None:
        live.summary[NAME]["ood_refused"] = int(refused.sum())
        live.summary[NAME]["ood_refused_share"] = float(refused.mean())
    live.end()
