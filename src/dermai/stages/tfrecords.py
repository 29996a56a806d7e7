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
import logging
import os
from pathlib import Path

import numpy as np

from dermai import params as params_mod
from dermai.core.preprocess import NO_COLOUR_CONSTANCY
from dermai.core.schema import SPLIT_COLUMNS
from dermai.errors import DermaiError, add_gate_argument, require_gate
from dermai.io import encode
from dermai.io.atomic import atomic_dir, write_json
from dermai.io.classes import read_classes
from dermai.io.tables import read_split, split_names

log = logging.getLogger(__name__)


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
    add_gate_argument(p)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    cfg, model = prm.tfrecords, prm.model
    colour_on = model.colour_constancy != NO_COLOUR_CONSTANCY  # params: then resized
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
    settings = encode.Encoding(
        raw,
        model.image_height,
        model.image_width,
        cfg.encoding,
        cfg.jpeg_quality,
        prm.index.max_pixels,
        model.colour_constancy,
        prm.index.max_decode_bytes,  # what index decoded within
    )
    workers = encode.pool(prm.index.workers or os.cpu_count() or 1, settings)
    meta: dict = {
        "classes": classes,
        "image_height": model.image_height,
        "image_width": model.image_width,
        "encoding": cfg.encoding,
        "splits": {},
    }
    if colour_on:  # absent = none: the default meta.json keeps its bytes
        meta["colour_constancy"] = model.colour_constancy
    # The index's metadata columns (index.manifest.sex/site/extra, a sidecar, a preset), carried
    # as raw strings for model.metadata to encode; absent = none, the default bytes unchanged.
    columns = [str(c) for df in list(frames.values())[:1] for c in df.columns]
    fields = [c for c in columns if c not in SPLIT_COLUMNS]
    if fields:
        meta["metadata_fields"] = fields
    try:
        with atomic_dir(out) as tmp:
            from dermai.models import data  # TensorFlow: after the pool forked (see io.encode)

            for s, df in frames.items():
                rows = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
                images = encode.encoded(workers, rows)
                names = data.write_split(tmp, s, rows, images, classes, cfg.shard_size, fields)
                counts = df["condition"].value_counts()
                meta["splits"][s] = {
                    "files": names,
                    "images": len(df),
                    "by_class": {c: int(counts.get(c, 0)) for c in classes},
                }
            write_json(tmp / "meta.json", meta)
    finally:
        workers.close()
        workers.join()
    log.info(
        "TFRecords written to %s: %s", out, {s: v["images"] for s, v in meta["splits"].items()}
    )
