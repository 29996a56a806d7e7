"""Train the classifier: EfficientNet backbone + dropout + softmax head, two-phase fine-tuning.

Phase 1 trains the head on a frozen backbone; phase 2 unfreezes the top `train.unfreeze_blocks`
stages (BatchNorm stays frozen) at a lower learning rate. Class imbalance is handled by
`train.imbalance`. The model with the best validation balanced accuracy is kept, and dvclive's
metrics report that epoch's values.

On a CPU (`train.feature_cache: true`) the top stages train from the frozen lower backbone's
activations of a few augmented copies of every training image, which the `features` stage
computed (`--features`): this is what makes a HAM10000 run fit in an hour on two cores, and an
experiment on head or phase-2 params does not recompute them. The cache's meta.json must match
this run's backbone, weights and cut. With a GPU, set `feature_cache: false` to train from the
TFRecords with on-the-fly augmentation at full resolution.

With `train.ensemble: K` > 1, K members share the frozen lower part and its cache and differ
only in their seed (member k trains with train.seed + k, each running both phases); the saved
model is ONE graph whose logits are the mean of the members' logits (`assemble_ensemble`).
dvclive's curves are member 0's; its summary adds the ensemble's validation metrics.

The structure lives in `dermai.models.classifier`, the loop in `dermai.models.training`; this
stage only reads, checks and writes.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.errors import DermaiError, require_gate
from dermai.io.atomic import write_json
from dermai.runtime.loader import train_params_path

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params", default="params.yaml", help="params file (sections: base, model, train)"
    )
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument(
        "--pretrained", required=True, help="converted Lite ImageNet weights (.weights.h5)"
    )
    p.add_argument(
        "--features",
        default=None,
        help="folder written by `dermai features` (needed if train.feature_cache)",
    )
    p.add_argument("--model", required=True, help="output .keras model")
    p.add_argument(
        "--train-params",
        default=None,
        help="output: resolved params, classes and input shape of the model "
        "(default: train_params.json beside the model)",
    )
    p.add_argument("--live", required=True, help="dvclive output folder")
    p.add_argument(
        "--gate",
        default=None,
        help="file that `dermai validate` writes only when the data gates pass",
    )


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    cfg, mcfg = prm.train, prm.model
    import keras
    from dvclive import Live

    from dermai.models import data, tracking
    from dermai.models import features as F
    from dermai.models import training as T
    from dermai.models.backbones import build_backbone, cut_layer_name, split_backbone
    from dermai.models.classifier import assemble_ensemble, build_head

    # The backbone is built under base.seed, as `dermai features` built it (with random weights
    # its init must match the cache); the head and the training then follow train.seed.
    strategy = T.setup_tf(cfg, prm.base.seed)
    meta = data.read_meta(args.tfrecords)
    classes = meta["classes"]
    # The class list comes from the TFRecords (index resolved it); base.classes, when set, agrees.
    if prm.base.classes and classes != prm.base.classes:
        raise DermaiError("TFRecords were written for other classes; rerun `dermai tfrecords`")
    shape = (meta["image_height"], meta["image_width"], 3)
    if (shape[0], shape[1]) != (mcfg.image_height, mcfg.image_width):
        raise DermaiError("TFRecords image size differs from model.image_*; rerun tfrecords")
    colour = meta.get("colour_constancy", "none")  # what the TFRecords' pixels went through
    if colour != mcfg.colour_constancy:
        raise DermaiError(
            f"TFRecords colour constancy ({colour}) differs from model.colour_constancy "
            f"({mcfg.colour_constancy}); rerun tfrecords"
        )
    t_start = time.time()
    with strategy.scope():
        backbone = build_backbone(mcfg.backbone, mcfg.weights, shape, args.pretrained)
        lower, upper = split_backbone(backbone, cfg.unfreeze_blocks)
        if cfg.seed != prm.base.seed:  # equal seeds keep one stream: the default run's bytes
            keras.utils.set_random_seed(cfg.seed)
        head = build_head(
            int(backbone.output.shape[-1]), len(classes), mcfg.dropout, cfg.weight_decay
        )
    live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None)
    epochs = cfg.head_epochs + (cfg.finetune_epochs if upper is not None else 0)
    tracker = tracking.Tracker(live, len(classes), total_epochs=epochs)
    seed = cfg.seed  # training randomness; the cache is identified by base.seed

    def new_head() -> keras.Model:
        return build_head(
            int(backbone.output.shape[-1]), len(classes), mcfg.dropout, cfg.weight_decay
        )

    k = cfg.ensemble  # members; 1 = the single model
    ens_val: tuple = ()
    if cfg.feature_cache:
        if args.features is None:
            raise DermaiError(
                "train.feature_cache needs --features (the folder that `dermai features` writes)"
            )
        expected = F.describe(
            lower,
            backbone=mcfg.backbone,
            weights=mcfg.weights,
            input_shape=shape,
            unfreeze_blocks=cfg.unfreeze_blocks,
            cut_layer=cut_layer_name(backbone, cfg.unfreeze_blocks),
            variants=cfg.cache_variants,
            seed=prm.base.seed,
            max_train_images=cfg.max_train_images,
            classes=classes,
        )
        cached = F.read(args.features, expected)
        train, val = cached["train"], cached["val"]
        log.info("feature cache read from %s in %.0f s", args.features, time.time() - t_start)

        def fit_member(u: keras.Model | None, h: keras.Model, s: int, t: tracking.Tracker) -> None:
            T.fit_cached(
                lower, u, h, train, val, cfg=cfg, n_classes=len(classes), seed=s, tracker=t
            )

    else:
        fitted: list[tuple[keras.Model, int]] = []

        def fit_member(u: keras.Model | None, h: keras.Model, s: int, t: tracking.Tracker) -> None:
            fitted.append(
                T.fit_images(
                    args.tfrecords, lower, u, h, shape, classes, cfg=cfg, seed=s, tracker=t
                )
            )

    uppers, heads, trackers = T.fit_ensemble(
        upper,
        head,
        fit_member,
        members=k,
        seed=seed,
        tracker=tracker,
        new_head=new_head,
        scope=strategy.scope,
    )
    if cfg.feature_cache:
        model = assemble_ensemble(lower, uppers, heads, shape, classes)
        n_train = int(len(train[1]) // max(cfg.cache_variants, 1))
        if k > 1:
            ens_val = T.cut_proba(model, val[0]), val[1]
    else:
        # One member: the model fit_images returns, as before (its archive keeps its state).
        model, n_train = fitted[0]
        if k > 1:
            model = assemble_ensemble(lower, uppers, heads, shape, classes)
            ens_val = T.images_proba(model, args.tfrecords, "val", cfg.batch_size)
    seeds = [T.member_seed(seed, i) for i in range(k)]

    T.save_model(model, Path(args.model))
    write_json(
        train_params_path(args.model, args.train_params),
        {
            "params": params_mod.as_dict(prm),
            "classes": classes,
            "input_shape": list(shape),
            # every runtime feeds the model as its TFRecords were (runtime.loader reads it)
            "colour_constancy": colour,
            "best_epoch": tracker.best_epoch,
            **(
                {"ensemble": {"seeds": seeds, "best_epochs": [t.best_epoch for t in trackers]}}
                if k > 1
                else {}
            ),
            "disclaimer": DISCLAIMER,
        },
    )
    tracker.summarise(n_train)
    if k > 1:
        tracking.summarise_ensemble(live, trackers, seeds, ens_val[1], ens_val[0])
    live.end()
    log.info(
        "trained in %.0f s; best epoch %d, val balanced acc %.4f",
        time.time() - t_start,
        tracker.best_epoch,
        tracker.best,
    )
