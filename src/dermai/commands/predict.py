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
from collections.abc import Callable
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
    g = p.add_argument_group(
        "patient metadata (a model trained with model.metadata; any subset, the rest unknown)"
    )
    g.add_argument("--age", default=None, help="age in years, for every image")
    g.add_argument("--sex", default=None, help="e.g. female, for every image")
    g.add_argument("--site", default=None, help="body site, e.g. back, for every image")
    g.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any field the model takes (e.g. itch=true), for every image; repeatable",
    )
    g.add_argument(
        "--metadata-csv",
        default=None,
        help="a CSV with an `image` column (file name or path) and a column per field: each "
        "image's own answers, over the flags above (a blank cell: the flag's, else unknown)",
    )


def _image_settings(params_path: str) -> tuple[list[str], int, int, int]:
    """Image extensions, max pixels, max file bytes and the decode budget (index.*)."""
    ix = params_mod.load_or_defaults(params_path).index
    return list(ix.extensions), ix.max_pixels, ix.max_file_bytes, ix.max_decode_bytes


Answers = Callable[[Path], dict[str, str]]


def flag_answers(args: argparse.Namespace) -> dict[str, str]:
    """The metadata given on the command line ({field: raw value}), for every image."""
    out = {f: v for f in ("age", "sex", "site") if (v := getattr(args, f)) is not None}
    for item in args.meta:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise DermaiError(f"--meta {item!r}: expected FIELD=VALUE, e.g. itch=true")
        out[field.strip()] = value
    return out


def csv_answers(path: str | Path) -> dict[str, dict[str, str]]:
    """{image key: {field: value}} of a metadata CSV (key: its `image` cell, a file name or a
    path); a non-blank cell only."""
    from dermai.io.tables import read_table

    df = read_table(path, ("image",), "metadata CSV")
    out: dict[str, dict[str, str]] = {}
    for line, row in enumerate(df.to_dict("records"), start=2):
        key = str(row["image"]).strip()
        if key in out:
            raise DermaiError(f"metadata CSV {path} line {line}: image {key!r} listed twice")
        out[key] = {str(k): str(v) for k, v in row.items() if k != "image" and str(v).strip()}
    return out


def answers_for(flags: dict[str, str], table: dict[str, dict[str, str]] | None) -> Answers:
    """Each image's answers: its CSV row (matched by path as given, else by file name) over
    the flags."""

    def get(p: Path) -> dict[str, str]:
        row = (table or {}).get(str(p)) or (table or {}).get(p.name) or {}
        return {**flags, **row}

    return get


def predict_files(
    bundle: Bundle,
    paths: list[Path],
    *,
    batch_size: int = BATCH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    budget: int = DEFAULT_DECODE_BUDGET,
    answers: Answers | None = None,
) -> list[dict[str, Any]]:
    """One record per path, in order: probabilities, or the reason it could not be read.

    An image the bundle's OOD guard refuses gets `in_distribution` False, the refusal message
    and no probabilities. A model with metadata gets each image's `answers` (missing =
    unknown), and the record says which fields it used (`metadata`)."""
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
        arrays, ok, rows = [], [], []
        recs: list[dict[str, Any]] = []
        for p in chunk:
            rec: dict[str, Any] = {"image": str(p), "error": ""}
            try:
                img = read(p, max_pixels, max_bytes=max_bytes, budget=budget)
                arrays.append(bundle.prepare(img))
                if bundle.metadata is not None:
                    row, rec["metadata"] = bundle.encode_answers(answers(p) if answers else {})
                    rows.append(row)
                ok.append(rec)
            except ImageRejected as exc:
                rec["error"] = str(exc)
                print(f"dermai predict: skipped {p}: {exc}", file=sys.stderr)
            recs.append(rec)
        if arrays:
            a = bundle.analyse(np.stack(arrays), np.stack(rows) if rows else None)
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
    if "metadata" in rec:
        out["metadata"] = rec["metadata"]
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
    with_meta = any("metadata" in r for r in records)
    for rec in records:
        row: dict[str, Any] = {
            "image": rec["image"],
            "error": rec["error"],
            "in_distribution": rec.get("in_distribution"),
        }
        if with_meta:
            used = rec.get("metadata", {}).get("used", {})
            row["metadata_used"] = ";".join(f"{k}={v}" for k, v in used.items())
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
            *(["metadata_used"] if with_meta else []),
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
    flags = flag_answers(args)
    table = csv_answers(args.metadata_csv) if args.metadata_csv else None
    if bundle.metadata is None and (flags or table):
        log.warning("%s takes no metadata: the given metadata is not used", Path(args.model).name)
    elif bundle.metadata is not None:
        log.info(
            "the model takes metadata %s (missing = unknown)", ", ".join(bundle.metadata.fields)
        )
    records = predict_files(
        bundle,
        paths,
        batch_size=max(1, args.batch_size),
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        budget=budget,
        answers=answers_for(flags, table),
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
        **({"metadata_fields": list(bundle.metadata.fields)} if bundle.metadata else {}),
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
