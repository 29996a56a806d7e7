"""Cache the frozen lower backbone's activations for `train` (the CPU path).

The lower EfficientNet stages (below the `train.unfreeze_blocks` trained in phase 2) run once over
`train.cache_variants` copies of every training image (copy 0 plain, the others augmented,
seeded) and once over the val images. As its own stage, the cache is computed only when the
TFRecords, the backbone, its weights, the cut or these params change: an experiment on the head or
phase-2 params (`dvc exp run -S train.lr=...`) skips it, and DVC's run cache brings back a cache
computed before for the same inputs.

With `split.folds` on, every image of train, val and test gets those copies too (`cv`, computed
once and shared by every fold's `cv-train`).

With `train.feature_cache: false` (the GPU path) nothing is computed; the folder holds only a
meta.json saying so.
"""

from __future__ import annotations

import argparse
import logging

from dermai import params as params_mod
from dermai.errors import add_gate_argument, require_gate
from dermai.models import features

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
    add_gate_argument(p)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    if not prm.train.feature_cache:
        features.write_disabled(args.out)
        log.info("train.feature_cache is false: no activations cached (train reads images)")
        return
    from dermai.models.data import read_meta

    records = read_meta(args.tfrecords)
    plan = features.plan(prm, records, args.pretrained)
    if not prm.split.folds:
        features.write(args.out, plan.key, features.cache(plan, args.tfrecords, prm.train))
        return
    # Cross-validation: every image's copies once, for all folds (not once per fold)
    splits = [s for s in ("train", "val", "test") if s in records["splits"]]
    arrays, ids = features.cache_cv(plan, args.tfrecords, prm.train, splits)
    features.write(args.out, {**plan.key, "cv_ids": ids}, arrays)
