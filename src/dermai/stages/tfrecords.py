"""Write sharded TFRecords per split: image bytes + label, age group, source, image id, SHA1.

By default images are decoded once here (EXIF orientation applied, any format and size), fitted
to the model input size and re-encoded as JPEG, so training decodes small uniform JPEGs;
`tfrecords.encoding: original` keeps the raw file bytes instead (see README for the measurement).
Colour constancy (`model.colour_constancy`, core.preprocess) runs here, on the fitted pixels
before the JPEG encoding, so training, the feature cache, evaluation and export all read the
corrected pixels, and the runtimes apply the same `core.preprocess.prepare` to new images.
It needs `encoding: resized` (original bytes are never fitted here). meta.json names the setting
only when it is on, so the default output is byte-identical to before it existed.
Same inputs, same bytes: shards follow the split CSV order and shuffling happens at read time.
A held-out site's `external.csv` (split.external_source) is written like test; without it the
output is exactly what it was before that option existed.
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dermai import params as params_mod
from dermai.core.hashing import ImageRejected, decode
from dermai.core.preprocess import NO_COLOUR_CONSTANCY, prepare
from dermai.errors import DermaiError, require_gate
from dermai.io.atomic import atomic_dir, write_json
from dermai.io.classes import read_classes
from dermai.io.tables import read_split, split_names
from dermai.params import DECODE_BUDGET

log = logging.getLogger(__name__)

_CFG: dict = {}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file (sections: base, index, tfrecords, model)",
    )
    p.add_argument(
        "--splits", required=True, help="folder with {train,val,test}.csv (and external.csv)"
    )
    p.add_argument("--raw", default=None, help="raw root; overrides index.raw_root")
    p.add_argument(
        "--classes",
        default=None,
        help="class list written by `dermai index` (default: base.classes)",
    )
    p.add_argument("--out", required=True, help="output folder (replaced whole)")
    p.add_argument(
        "--gate",
        default=None,
        help="file that `dermai validate` writes only when the data gates pass",
    )


def _init(
    raw: str,
    h: int,
    w: int,
    encoding: str,
    quality: int,
    max_pixels: int,
    colour: float | str = NO_COLOUR_CONSTANCY,
    budget: int = DECODE_BUDGET,
) -> None:
    _CFG.update(
        raw=Path(raw),
        h=h,
        w=w,
        encoding=encoding,
        quality=quality,
        max_pixels=max_pixels,
        colour=colour,
        budget=budget,
    )


def encode_image(path: str) -> bytes:
    """The bytes stored for one image (worker; PIL only, no TensorFlow)."""
    data = (_CFG["raw"] / path).read_bytes()
    if _CFG["encoding"] == "original":
        return data
    # Draft decoding: a 12 MP camera JPEG is scaled down in libjpeg, to no less than the input.
    img, _ = decode(data, _CFG["max_pixels"], draft=(_CFG["w"], _CFG["h"]), budget=_CFG["budget"])
    buf = io.BytesIO()
    fitted = prepare(img, _CFG["h"], _CFG["w"], _CFG.get("colour", NO_COLOUR_CONSTANCY))
    fitted.save(buf, "JPEG", quality=_CFG["quality"])
    return buf.getvalue()


def _example(tf, image: bytes, row: dict, label: int):
    def b(v: str | bytes):
        v = v.encode() if isinstance(v, str) else v
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    feats = {
        "image": b(image),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "age_group": b(row["age_group"]),
        "source": b(row["source"]),
        "image_id": b(row["image_id"]),
        "sha1": b(row["sha1"]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)  # map order would follow str hash


def shard_names(split: str, n_rows: int, shard_size: int) -> list[str]:
    n = max(1, -(-n_rows // shard_size))
    return [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]


def write_split(
    tf, pool, folder: Path, split: str, df: pd.DataFrame, classes: list[str], shard_size: int
) -> list[str]:
    """Encode the split's images in the worker pool and write them, in order, to shards."""
    names = shard_names(split, len(df), shard_size)
    rows = df.to_dict("records")
    images = pool.imap(encode_image, [r["path"] for r in rows], chunksize=32)
    it = iter(
        tqdm(
            images,
            total=len(rows),
            desc=f"tfrecords {split}",
            unit="img",
            mininterval=1.0,
            disable=None,
        )
    )
    for k, name in enumerate(names):
        with tf.io.TFRecordWriter(str(folder / name)) as w:
            for row in rows[k * shard_size : (k + 1) * shard_size]:
                try:
                    image = next(it)
                except (ImageRejected, OSError) as exc:
                    raise DermaiError(f"{row['path']}: {exc} (re-run `dermai index`)") from exc
                w.write(_example(tf, image, row, classes.index(row["condition"])))
    return names


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    cfg, model = prm.tfrecords, prm.model
    colour_on = model.colour_constancy != NO_COLOUR_CONSTANCY
    if colour_on and cfg.encoding != "resized":
        raise DermaiError(
            "model.colour_constancy needs tfrecords.encoding: resized (the correction runs on "
            "the fitted pixels, and original bytes are stored as they are)"
        )
    raw = Path(args.raw or prm.index.raw_root)
    classes = read_classes(args.classes, list(prm.base.classes))
    frames = {}
    for s in split_names(args.splits):
        f = Path(args.splits) / f"{s}.csv"
        df = read_split(args.splits, s)
        # Seeded row shuffle: manifests are often sorted by label, and a read-time shuffle
        # buffer cannot mix a file that is sorted end to end.
        order = np.random.default_rng(prm.base.seed).permutation(len(df))
        frames[s] = df.iloc[order].reset_index(drop=True)
        bad = sorted(set(frames[s]["condition"]) - set(classes))
        if bad:
            raise DermaiError(f"{f}: labels {bad} not in the class list {classes}")

    out = Path(args.out)
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    workers = prm.index.workers or os.cpu_count() or 1
    # The pool forks before TensorFlow is imported, so workers stay small and fork-safe.
    pool = ctx.Pool(
        workers,
        initializer=_init,
        initargs=(
            str(raw),
            model.image_height,
            model.image_width,
            cfg.encoding,
            cfg.jpeg_quality,
            prm.index.max_pixels,
            model.colour_constancy,
            prm.index.max_decode_bytes,  # what index decoded within
        ),
    )
    meta: dict = {
        "classes": classes,
        "image_height": model.image_height,
        "image_width": model.image_width,
        "encoding": cfg.encoding,
        "splits": {},
    }
    if colour_on:  # absent = none: the default meta.json keeps its bytes
        meta["colour_constancy"] = model.colour_constancy
    try:
        with atomic_dir(out) as tmp:
            import tensorflow as tf

            for s, df in frames.items():
                names = write_split(tf, pool, tmp, s, df, classes, cfg.shard_size)
                counts = df["condition"].value_counts()
                meta["splits"][s] = {
                    "files": names,
                    "images": len(df),
                    "by_class": {c: int(counts.get(c, 0)) for c in classes},
                }
            write_json(tmp / "meta.json", meta)
    finally:
        pool.close()
        pool.join()
    log.info(
        "TFRecords written to %s: %s", out, {s: v["images"] for s, v in meta["splits"].items()}
    )
