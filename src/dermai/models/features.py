"""The frozen-backbone feature cache: lower-backbone activations of the train split (plain plus
augmented copies) and of the val split, saved as plain .npy files with a meta.json.

It is its own module (and DVC stage, `dermai features`) so that an experiment changing only the
head or phase-2 params reuses it instead of recomputing it: it depends on the TFRecords, the
backbone, its weights and where it is cut, never on the training loop, the head or the loss.
The meta.json records what the activations were computed with; `dermai train` refuses a cache
whose meta differs from its own backbone and cut. Both stages build that backbone, its cut and
the cache's key with one call (`plan`), so they cannot disagree on how.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermai import params as params_mod
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_dir
from dermai.models.backbones import build_backbone, cut_layer_name, split_at

log = logging.getLogger(__name__)

META = "meta.json"
CACHED_SPLITS = ("train", "val")  # the splits whose activations are cached
BATCH = 64  # forward-pass batch; does not change the activations
# The keys `dermai train` compares with its own set-up (the counts are informative only).
CHECKED = (
    "backbone",
    "weights",
    "lower_weights_sha256",
    "input_shape",
    "unfreeze_blocks",
    "cut_layer",
    "activation_shape",
    "variants",
    "seed",
    "max_train_images",
    "classes",
)


def array_files(split: str) -> tuple[str, str]:
    """(activations, labels) file names of `split`."""
    return f"x_{split}.npy", f"y_{split}.npy"


def weights_sha256(model: Any) -> str:
    """Digest of a model's weights: the cache is refused by a train whose frozen part differs
    (other pretrained file, or another random init with `model.weights: none`)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def describe(
    lower: Any,
    *,
    backbone: str,
    weights: str,
    input_shape: tuple[int, int, int],
    unfreeze_blocks: int,
    cut_layer: str | None,
    variants: int,
    seed: int,
    max_train_images: int,
    classes: list[str],
) -> dict[str, Any]:
    """What a cache computed by `lower` with these settings must say in its meta.json (the
    CHECKED keys); both the `features` and the `train` stage build it here."""
    return {
        "feature_cache": True,
        "backbone": backbone,
        "weights": weights,
        "lower_weights_sha256": weights_sha256(lower),
        "input_shape": [int(d) for d in input_shape],
        "unfreeze_blocks": int(unfreeze_blocks),
        "cut_layer": cut_layer,
        "activation_shape": [int(d) for d in lower.output.shape[1:]],
        "variants": int(variants),
        "seed": int(seed),
        "max_train_images": int(max_train_images),
        "classes": list(classes),
        "dtype": "float16",
    }


@dataclass
class Plan:
    """The network both the `features` and the `train` stage build from the same params: the
    backbone (initialised under base.seed: with random weights its init must match the cache),
    its frozen lower and trainable upper part, the layer where it is cut, and the key a feature
    cache computed with this lower part carries (`describe`)."""

    backbone: Any
    lower: Any
    upper: Any | None
    cut: str | None
    shape: tuple[int, int, int]
    classes: list[str]
    seed: int  # base.seed: the backbone's init and the cache's augmented copies
    key: dict[str, Any]
    colour_constancy: float | str  # what the TFRecords' pixels went through
    scope: Callable[[], AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


def plan(
    prm: params_mod.Params,
    records: dict[str, Any],
    pretrained: str | Path | None,
    scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Plan:
    """Build the backbone for TFRecords described by `records` (their meta.json) and cut it at
    `train.unfreeze_blocks`; `scope` is the distribution strategy's (the variables live there).

    The class list comes from the TFRecords (index resolved it); base.classes, when set, must
    agree, and so must the image size with model.image_*."""
    import keras
    import tensorflow as tf

    mcfg, cfg = prm.model, prm.train
    classes = list(records["classes"])
    if prm.base.classes and classes != prm.base.classes:
        raise DermaiError("TFRecords were written for other classes; rerun `dermai tfrecords`")
    shape = (int(records["image_height"]), int(records["image_width"]), 3)
    if (shape[0], shape[1]) != (mcfg.image_height, mcfg.image_width):
        raise DermaiError("TFRecords image size differs from model.image_*; rerun tfrecords")
    keras.utils.set_random_seed(prm.base.seed)
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    with scope():
        backbone = build_backbone(mcfg.backbone, mcfg.weights, shape, pretrained)
        cut = cut_layer_name(backbone, cfg.unfreeze_blocks)
        lower, upper = split_at(backbone, cut)
    key = describe(
        lower,
        backbone=mcfg.backbone,
        weights=mcfg.weights,
        input_shape=shape,
        unfreeze_blocks=cfg.unfreeze_blocks,
        cut_layer=cut,
        variants=cfg.cache_variants,
        seed=prm.base.seed,
        max_train_images=cfg.max_train_images,
        classes=classes,
    )
    colour = records.get("colour_constancy", "none")
    return Plan(backbone, lower, upper, cut, shape, classes, prm.base.seed, key, colour, scope)


def cache(
    p: Plan, folder: str | Path, cfg: params_mod.TrainParams
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The cache's arrays: `train.cache_variants` copies of every training image (at most
    `train.max_train_images` of them) and one of every val image, through the plan's lower part."""
    t0 = time.time()
    arrays = {
        "train": compute(
            p.lower,
            folder,
            "train",
            variants=cfg.cache_variants,
            seed=p.seed,
            limit=cfg.max_train_images,
        ),
        "val": compute(p.lower, folder, "val", variants=1, seed=p.seed),
    }
    log.info(
        "feature cache: %d train rows (%d copies), %d val rows of %s at %s in %.0f s",
        len(arrays["train"][1]),
        cfg.cache_variants,
        len(arrays["val"][1]),
        p.key["activation_shape"],
        p.cut or "the pooled output",
        time.time() - t0,
    )
    return arrays


def compute(
    lower: Any,
    folder: str | Path,
    split: str,
    *,
    variants: int,
    seed: int,
    limit: int = 0,
    batch: int = BATCH,
    ids: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower-backbone activations (float16) for `variants` copies of each image of `split`,
    and the labels (int64); `ids`, when given, receives the image ids of copy 0 in row order.

    Copy 0 is the plain image; copies 1.. are augmented with seeds derived from `seed`, so the
    cache, and the model trained from it, are reproducible.
    """
    import tensorflow as tf

    from dermai.models import data

    forward = tf.function(lambda x: lower(x, training=False), reduce_retracing=True)
    xs, ys = [], []
    for v in range(variants):
        # A capped run takes a seeded random subset, not the first rows of the file.
        ds = data.dataset(
            folder,
            split,
            batch,
            training=v > 0,
            seed=seed * 1000 + v,
            shuffle=bool(limit),
            with_meta=ids is not None,
        )
        if limit:
            ds = ds.unbatch().take(limit).batch(batch)
        t0, n = time.time(), 0
        for x, y, *meta in ds:
            xs.append(forward(x).numpy().astype(np.float16))
            ys.append(y.numpy())
            if ids is not None and v == 0:
                ids.extend(i.decode() for i in meta[0]["image_id"].numpy())
            n += len(y)
        log.info(
            "cached %s copy %d/%d: %d images in %.0f s (%.1f img/s)",
            split,
            v + 1,
            variants,
            n,
            time.time() - t0,
            n / max(time.time() - t0, 1e-9),
        )
        del ds
    if not xs:
        raise DermaiError(f"no {split} images in the TFRecords to cache")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def cache_cv(
    p: Plan, folder: str | Path, cfg: params_mod.TrainParams, splits: list[str]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """`cache`'s arrays plus `cv`: `train.cache_variants` copies of EVERY image of `splits`
    (copy-major: row v * N + i is copy v of image i), computed once for all folds, and the
    image ids of its N images. The train and val arrays are the same computations as
    `cache`'s (val is copy 0 of its copies), so the single split's training is unchanged."""
    if cfg.max_train_images:
        raise DermaiError("split.folds needs train.max_train_images: 0 (every image is cached)")
    t0, v = time.time(), cfg.cache_variants
    blocks, labels, ids = [], [], []
    arrays = {}
    for split in splits:
        split_ids: list[str] = []
        x, y = compute(p.lower, folder, split, variants=v, seed=p.seed, ids=split_ids)
        n = len(split_ids)
        if split == "train":
            arrays["train"] = (x, y)
        elif split == "val":
            arrays["val"] = (x[:n], y[:n])
        blocks.append(x.reshape(v, n, *x.shape[1:]))
        labels.append(y[:n])
        ids += split_ids
    x_cv = np.concatenate(blocks, axis=1)
    arrays["cv"] = (x_cv.reshape(-1, *x_cv.shape[2:]), np.concatenate(labels))
    log.info("feature cache for %d-copy CV of %d images in %.0f s", v, len(ids), time.time() - t0)
    return arrays, ids


def read_cv(
    folder: str | Path, expected: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The CV arrays of `cache_cv`: activations (copies, images, ...), labels and image ids."""
    meta = read_meta(folder)
    check(meta, expected)
    if "cv_ids" not in meta:
        raise DermaiError(
            f"feature cache {folder} has no CV arrays: run `dermai features` with split.folds on"
        )
    fx, fy = array_files("cv")
    x = np.load(Path(folder) / fx, allow_pickle=False)
    ids = list(meta["cv_ids"])
    return x.reshape(meta["variants"], len(ids), *x.shape[1:]), np.load(Path(folder) / fy), ids


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Sorted keys and a trailing newline: equal content gives equal bytes."""
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write(
    out: str | Path, meta: dict[str, Any], arrays: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Replace folder `out` atomically with the arrays ({split: (x, y)}) and meta.json.

    .npy files hold a fixed header and the raw bytes, so the same activations give the same
    files, and DVC can reuse them from its run cache.
    """
    meta = {**meta, "rows": {s: len(y) for s, (_, y) in sorted(arrays.items())}}
    with atomic_dir(out) as tmp:
        for split, (x, y) in sorted(arrays.items()):
            fx, fy = array_files(split)
            np.save(tmp / fx, np.ascontiguousarray(x, dtype=np.float16), allow_pickle=False)
            np.save(tmp / fy, np.ascontiguousarray(y, dtype=np.int64), allow_pickle=False)
        _write_meta(tmp, meta)


def write_disabled(out: str | Path) -> None:
    """With `train.feature_cache: false` train reads the images: the folder says only that."""
    with atomic_dir(out) as tmp:
        _write_meta(tmp, {"feature_cache": False})


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.is_file():
        raise DermaiError(f"no feature cache at {folder} (missing {META}); run `dermai features`")
    return json.loads(path.read_text(encoding="utf-8"))


def check(meta: dict[str, Any], expected: dict[str, Any]) -> None:
    """One-line error naming each CHECKED key where the cache differs from `expected`."""
    if not meta.get("feature_cache"):
        raise DermaiError(
            "the feature cache was written with train.feature_cache: false; "
            "rerun `dermai features` with the same params as train"
        )
    diffs = [
        f"{k} {meta.get(k)!r} != {expected.get(k)!r}"
        for k in CHECKED
        if meta.get(k) != expected.get(k)
    ]
    if diffs:
        raise DermaiError(
            "feature cache was made with another backbone/cut/params ("
            + "; ".join(diffs)
            + "); rerun `dermai features`"
        )


def read(folder: str | Path, expected: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (float16 activations, int64 labels)} after checking the meta against `expected`."""
    meta = read_meta(folder)
    check(meta, expected)
    out = {}
    for split in CACHED_SPLITS:
        fx, fy = array_files(split)
        x = np.load(Path(folder) / fx, allow_pickle=False)
        y = np.load(Path(folder) / fy, allow_pickle=False)
        shape = [int(d) for d in x.shape[1:]]
        if len(x) != len(y) or len(y) != meta["rows"][split] or shape != meta["activation_shape"]:
            raise DermaiError(
                f"feature cache {folder}/{fx} does not match its meta.json "
                f"({len(x)} x {shape}, {len(y)} labels); rerun `dermai features`"
            )
        out[split] = (x, y)
    return out
