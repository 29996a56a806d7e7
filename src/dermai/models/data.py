"""tf.data readers for the TFRecords: parallel decode, dermoscopy augmentation, prefetch.

Augmentation is seeded and stateless (`tf.random.stateless_*`) so the same seed gives the same
batches. Flips and 180-degree turns keep a non-square (4:3) input's shape; 90-degree turns are
added when the input is square.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from dermai.errors import DermaiError

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "age_group": tf.io.FixedLenFeature([], tf.string),
    "source": tf.io.FixedLenFeature([], tf.string),
    "image_id": tf.io.FixedLenFeature([], tf.string),
    "sha1": tf.io.FixedLenFeature([], tf.string),
}
AUTOTUNE = tf.data.AUTOTUNE
META_PREFIX = "meta_"  # a metadata column's feature: meta_<column>, its raw string


def read_meta(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "meta.json").read_text())


def files(folder: str | Path, split: str) -> list[str]:
    meta = read_meta(folder)
    return [str(Path(folder) / f) for f in meta["splits"][split]["files"]]


def decode(height: int, width: int):
    """Parse one example into (float32 HxWx3 image in [0, 255], label, metadata)."""

    def _decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        ex = tf.io.parse_single_example(serialized, FEATURES)
        img = tf.cast(
            tf.io.decode_image(ex["image"], channels=3, expand_animations=False), tf.float32
        )
        shape = tf.shape(img)
        # Shards written with encoding=resized are already at the input size: skip the resize.
        img = tf.cond(
            tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width)),
            lambda: img,
            lambda: tf.image.resize(img, (height, width), antialias=True),
        )
        img = tf.ensure_shape(img, (height, width, 3))
        meta = {k: ex[k] for k in ("age_group", "source", "image_id")}
        return img, ex["label"], meta

    return _decode


def augment(img: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips, 180/90-degree turns, mild scale and colour jitter. `seed` is a shape-[2] int."""
    h, w = img.shape[0], img.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 8)
    img = tf.image.stateless_random_flip_left_right(img, seeds[0])
    img = tf.image.stateless_random_flip_up_down(img, seeds[1])
    if h == w:
        k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
        img = tf.image.rot90(img, k)
    # scale jitter: crop 85-100% of the side, resize back
    frac = tf.random.stateless_uniform([], seeds[3], 0.85, 1.0)
    ch = tf.cast(tf.round(frac * h), tf.int32)
    cw = tf.cast(tf.round(frac * w), tf.int32)
    img = tf.image.stateless_random_crop(img, tf.stack([ch, cw, 3]), seeds[4])
    img = tf.image.resize(img, (h, w))
    img = img / 255.0
    img = tf.image.stateless_random_brightness(img, 0.08, seeds[5])
    img = tf.image.stateless_random_contrast(img, 0.9, 1.1, seeds[6])
    img = tf.image.stateless_random_saturation(img, 0.9, 1.1, seeds[7])
    return tf.clip_by_value(img * 255.0, 0.0, 255.0)


def dataset(
    folder: str | Path,
    split: str,
    batch_size: int,
    *,
    training: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    with_meta: bool = False,
    oversample_weights: list[float] | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (image, label[, meta]). Training data is augmented and, unless
    `shuffle=False`, shuffled (both seeded).

    `oversample_weights` (one per class) draws classes with those probabilities instead of the
    file order: balanced sampling for the `oversample` imbalance mode.
    """
    meta = read_meta(folder)
    h, w = meta["image_height"], meta["image_width"]
    ds = tf.data.TFRecordDataset(files(folder, split), num_parallel_reads=AUTOTUNE)
    if training if shuffle is None else shuffle:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(decode(h, w), num_parallel_calls=AUTOTUNE, deterministic=True)
    if oversample_weights is not None:
        n_classes = len(oversample_weights)
        per_class = [
            ds.filter(lambda _i, y, _m, c=c: tf.equal(y, c)).repeat() for c in range(n_classes)
        ]
        ds = tf.data.Dataset.sample_from_datasets(per_class, weights=oversample_weights, seed=seed)
    elif repeat:
        ds = ds.repeat()
    if training:
        counter = tf.data.Dataset.counter()
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda ex, i: (augment(ex[0], tf.stack([tf.cast(seed, tf.int64), i])), ex[1], ex[2]),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    if not with_meta:
        ds = ds.map(lambda x, y, m: (x, y), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def representative_images(folder: str | Path, n: int, seed: int) -> np.ndarray:
    """`n` TRAIN images (float32 raw RGB), a seeded uniform sample over the whole split.

    Picks record indices first and decodes only those, so a 10k-image split costs n decodes.
    """
    return representative_with_ids(folder, n, seed)[0]


def representative_with_ids(folder: str | Path, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """`representative_images` and the image ids of its rows (a metadata model's int8
    calibration needs each image's metadata too)."""
    meta = read_meta(folder)
    total = int(meta["splits"]["train"]["images"])
    if total == 0:
        raise DermaiError("the TRAIN split is empty: no representative images for int8")
    n = min(n, total)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    keep = tf.constant(chosen, dtype=tf.int64)
    ds = (
        tf.data.TFRecordDataset(files(folder, "train"))  # sequential: stable order
        .enumerate()
        .filter(lambda i, _r: tf.reduce_any(tf.equal(i, keep)))
        .map(lambda _i, r: decode(meta["image_height"], meta["image_width"])(r))
    )
    xs, ids = [], []
    for x, _y, m in ds:
        xs.append(x.numpy())
        ids.append(m["image_id"].numpy().decode("utf-8"))
    return np.stack(xs).astype(np.float32), ids


def metadata_fields(folder: str | Path) -> list[str]:
    """The metadata columns the TFRecords carry (meta.json `metadata_fields`; none: [])."""
    return list(read_meta(folder).get("metadata_fields", []))


def read_metadata(
    folder: str | Path, split: str
) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """(image ids, {column: raw strings}, labels) of `split` in the order `dataset` reads it
    (the same interleaved reads), without decoding an image: what `model.metadata` encodes
    (core.metadata). The columns are the carried metadata columns and age_group."""
    fields = metadata_fields(folder)
    spec = {k: FEATURES[k] for k in ("image_id", "age_group", "label")}
    spec |= {META_PREFIX + f: tf.io.FixedLenFeature([], tf.string, "") for f in fields}
    ids: list[str] = []
    labels: list[np.ndarray] = []
    values: dict[str, list[str]] = {f: [] for f in (*fields, "age_group")}
    ds = tf.data.TFRecordDataset(files(folder, split), num_parallel_reads=AUTOTUNE).map(
        lambda r: tf.io.parse_single_example(r, spec)
    )
    for ex in ds.batch(1024):
        ids += [v.decode("utf-8") for v in ex["image_id"].numpy().tolist()]
        labels.append(ex["label"].numpy())
        for f in (*fields, "age_group"):
            key = f if f == "age_group" else META_PREFIX + f
            values[f] += [v.decode("utf-8") for v in ex[key].numpy().tolist()]
    y = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
    return ids, values, y


def split_arrays(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in dataset(folder, split, 64):
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise DermaiError(f"the {split} split is empty")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


# --------------------------------------------------------------------------- writing


def example(image: bytes, row: dict, label: int, metadata: Sequence[str] = ()) -> bytes:
    """One serialized example of FEATURES (what `dataset` parses back), plus the raw strings
    of the `metadata` columns of `row` (`read_metadata`)."""

    def b(v: str | bytes) -> tf.train.Feature:
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
    feats |= {META_PREFIX + f: b(str(row[f])) for f in metadata}
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)  # map order would follow str hash


def shard_names(split: str, n_rows: int, shard_size: int) -> list[str]:
    n = max(1, -(-n_rows // shard_size))
    return [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]


def write_split(
    folder: Path,
    split: str,
    rows: list[dict[str, Any]],
    images: Iterable[bytes],
    classes: list[str],
    shard_size: int,
    metadata: Sequence[str] = (),
) -> list[str]:
    """Write the split's `rows` (split CSV records) with their encoded `images` (in the same
    order) and their `metadata` columns to shards of `shard_size` examples; returns the shard
    names."""
    names = shard_names(split, len(rows), shard_size)
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
                w.write(example(next(it), row, classes.index(row["condition"]), metadata))
    return names
