"""Predict skin-condition probabilities for image files or folders (NOT a diagnosis).

Each image is decoded with its EXIF orientation applied, fitted to the model's input exactly as
the training data was, and given calibrated per-class probabilities (temperature from the
model's calibration) with its top-1 and top-3 classes. Folders are searched recursively. One
image without --out prints JSON to stdout; otherwise a CSV (or a JSON document on stdout).
Unreadable images are reported on stderr and as a row with an `error`, never fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.core.hashing import ImageRejected
from dermai.errors import DermaiError
from dermai.io.atomic import write_csv
from dermai.io.images import (
    DEFAULT_DECODE_BUDGET,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    expand,
    read,
)
from dermai.io.pipeline import pipeline_file
from dermai.runtime import bundle as bundle_mod

if TYPE_CHECKING:
    from dermai.runtime.bundle import Bundle

log = logging.getLogger(__name__)

BATCH = 32
TOP_K = bundle_mod.TOP_K


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file, for index.extensions and index.max_pixels (optional)",
    )
    bundle_mod.add_model_arguments(p)
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="image files and/or folders (searched recursively)",
    )
    p.add_argument("--out", default=None, help="write a CSV here instead of JSON to stdout")
    p.add_argument("--batch-size", type=int, default=BATCH, help="images per model call")


def _image_settings(params_path: str) -> tuple[list[str], int, int, int]:
    """Image extensions, max pixels, max file bytes and the decode budget (index.*)."""
    ix = params_mod.load_or_defaults(params_path).index
    return list(ix.extensions), ix.max_pixels, ix.max_file_bytes, ix.max_decode_bytes


def predict_files(
    bundle: Bundle,
    paths: list[Path],
    *,
    batch_size: int = BATCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    budget: int = DEFAULT_DECODE_BUDGET,
) -> list[dict[str, Any]]:
    """One record per path, in order: probabilities, or the reason it could not be read.

    An image the bundle's OOD guard refuses gets `in_distribution` False, the refusal message
    and no probabilities."""
    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    bar = tqdm(
        total=len(paths),
        unit="img",
        file=sys.stderr,
        disable=len(paths) < 2 * batch_size,
        desc="predict",
    )
    message = bundle.ood_message() if bundle.guard is not None else ""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        arrays, ok = [], []
        recs: list[dict[str, Any]] = []
        for p in chunk:
            rec: dict[str, Any] = {"image": str(p), "error": ""}
            try:
                img = read(p, max_pixels, max_bytes=max_bytes, budget=budget)
                arrays.append(bundle.prepare(img))
                ok.append(rec)
            except ImageRejected as exc:
                rec["error"] = str(exc)
                print(f"dermai predict: skipped {p}: {exc}", file=sys.stderr)
            recs.append(rec)
        if arrays:
            a = bundle.analyse(np.stack(arrays))
            for rec, pr, ins in zip(ok, a.probabilities, a.in_distribution, strict=True):
                rec["in_distribution"] = bool(ins)
                if not ins:
                    rec["message"] = message
                    continue
                rec["probabilities"] = {
                    c: float(v) for c, v in zip(bundle.classes, pr, strict=True)
                }
                rec["top"] = bundle_mod.top(pr, bundle.classes)
        records += recs
        bar.update(len(chunk))
    bar.close()
    return records


def to_json(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"image": rec["image"]}
    if rec["error"]:
        out["error"] = rec["error"]
        return out
    out["in_distribution"] = rec.get("in_distribution", True)
    if not out["in_distribution"]:
        out["message"] = rec.get("message", "")
        return out
    out["top1"] = {"class": rec["top"][0][0], "probability": round(rec["top"][0][1], 6)}
    out["top3"] = [{"class": c, "probability": round(p, 6)} for c, p in rec["top"]]
    out["probabilities"] = {c: round(p, 6) for c, p in rec["probabilities"].items()}
    return out


def to_frame(records: list[dict[str, Any]], classes: list[str]) -> Any:
    import pandas as pd

    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "image": rec["image"],
            "error": rec["error"],
            "in_distribution": rec.get("in_distribution"),
        }
        top = rec.get("top", [])
        for k in range(TOP_K):
            row[f"top{k + 1}"] = top[k][0] if k < len(top) else ""
            row[f"top{k + 1}_probability"] = round(top[k][1], 6) if k < len(top) else None
        for c in classes:
            p = rec.get("probabilities", {}).get(c)
            row[f"p_{c}"] = None if p is None else round(p, 6)
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "image",
            "error",
            "in_distribution",
            *[f"top{k + 1}{s}" for k in range(TOP_K) for s in ("", "_probability")],
            *[f"p_{c}" for c in classes],
        ],
    )


def run(args: argparse.Namespace) -> None:
    extensions, max_pixels, max_bytes, budget = _image_settings(args.params)
    paths = expand(args.images, extensions)
    if not paths:
        raise DermaiError("no image files found in the given folders")
    args.model = pipeline_file("train", "--model", args.model)
    bundle = bundle_mod.load(
        args.model, train_params=args.train_params, calibration=args.calibration
    )
    if bundle.guard is None:
        log.warning(
            "no %s beside the model: images unlike the training data are not flagged",
            bundle_mod.OOD_FILE,
        )
    records = predict_files(
        bundle,
        paths,
        batch_size=max(1, args.batch_size),
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        budget=budget,
    )
    failed = sum(1 for r in records if r["error"])
    refused = sum(1 for r in records if r.get("in_distribution") is False)
    if refused:
        log.warning(
            "%d image(s) do not look like the training data: no probabilities for "
            "them (in_distribution = False)",
            refused,
        )
    log.info(
        "predicted %d image(s), %d skipped (T=%.4f, tta %s). %s",
        len(records) - failed,
        failed,
        bundle.temperature,
        bundle.tta,
        DISCLAIMER,
    )
    meta = {
        "model": Path(args.model).name,
        "temperature": round(bundle.temperature, 6),
        **({"tta": bundle.tta} if bundle.tta != "none" else {}),
        "disclaimer": DISCLAIMER,
    }
    if args.out:
        write_csv(args.out, to_frame(records, bundle.classes))
        log.info("wrote %s", args.out)
    elif len(records) == 1:
        json.dump({**to_json(records[0]), **meta}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        json.dump({**meta, "predictions": [to_json(r) for r in records]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if failed == len(records):  # the report above says why for each; the exit code says "none"
        raise DermaiError(
            f"predicted nothing: all {failed} image(s) failed "
            f"(first: {records[0]['image']}: {records[0]['error']})"
        )
