"""Cache the frozen lower backbone's activations for `train` (the CPU path).

The lower EfficientNet stages (below the `train.unfreeze_blocks` trained in phase 2) run once over
`train.cache_variants` copies of every training image (copy 0 plain, the others augmented,
seeded) and once over the val images. As its own stage, the cache is computed only when the
TFRecords, the backbone, its weights, the cut or these params change: an experiment on the head or
phase-2 params (`dvc exp run -S train.lr=...`) skips it, and DVC's run cache brings back a cache
computed before for the same inputs.

With `train.feature_cache: false` (the GPU path) nothing is computed; the folder holds only a
meta.json saying so.
"""

from __future__ import annotations

import argparse
import logging
import time

from dermai import params as params_mod
from dermai.errors import DermaiError, require_gate

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file (uses base.seed, model.backbone/weights/image_*, "
        "train.unfreeze_blocks/cache_variants/max_train_images/feature_cache)",
    )
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument(
        "--pretrained", required=True, help="converted Lite ImageNet weights (.weights.h5)"
    )
    p.add_argument("--out", required=True, help="output folder (.npy arrays + meta.json)")
    p.add_argument(
        "--gate",
        default=None,
        help="file that `dermai validate` writes only when the data gates pass",
    )


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    cfg, mcfg = prm.train, prm.model
    from dermai.models import features as F

    if not cfg.feature_cache:
        F.write_disabled(args.out)
        log.info("train.feature_cache is false: no activations cached (train reads images)")
        return

    import keras
    import tensorflow as tf

    from dermai.models import data
    from dermai.models.backbones import build_backbone, cut_layer_name, split_backbone

    keras.utils.set_random_seed(prm.base.seed)
    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    meta = data.read_meta(args.tfrecords)
    # The class list comes from the TFRecords (index resolved it); base.classes, when set, agrees.
    if prm.base.classes and meta["classes"] != prm.base.classes:
        raise DermaiError("TFRecords were written for other classes; rerun `dermai tfrecords`")
    shape = (meta["image_height"], meta["image_width"], 3)
    if (shape[0], shape[1]) != (mcfg.image_height, mcfg.image_width):
        raise DermaiError("TFRecords image size differs from model.image_*; rerun tfrecords")
    t0 = time.time()
    backbone = build_backbone(mcfg.backbone, mcfg.weights, shape, args.pretrained)
    lower, _ = split_backbone(backbone, cfg.unfreeze_blocks)
    info = F.describe(
        lower,
        backbone=mcfg.backbone,
        weights=mcfg.weights,
        input_shape=shape,
        unfreeze_blocks=cfg.unfreeze_blocks,
        cut_layer=cut_layer_name(backbone, cfg.unfreeze_blocks),
        variants=cfg.cache_variants,
        seed=prm.base.seed,
        max_train_images=cfg.max_train_images,
        classes=meta["classes"],
    )
    seed = prm.base.seed
    arrays = {
        "train": F.compute(
            lower,
            args.tfrecords,
            "train",
            variants=cfg.cache_variants,
            seed=seed,
            limit=cfg.max_train_images,
        ),
        "val": F.compute(lower, args.tfrecords, "val", variants=1, seed=seed),
    }
    F.write(args.out, info, arrays)
    log.info(
        "feature cache: %d train rows (%d copies), %d val rows of %s at %s in %.0f s",
        len(arrays["train"][1]),
        cfg.cache_variants,
        len(arrays["val"][1]),
        info["activation_shape"],
        info["cut_layer"] or "the pooled output",
        time.time() - t0,
    )
