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
model is ONE graph whose logits are the mean of the members' logits. dvclive's curves are member
0's; its summary adds the ensemble's validation metrics.

The network is planned by `dermai.models.features.plan` (as the `features` stage plans it) and
trained by `dermai.models.training.fit`; this stage reads the arguments and writes the files.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.errors import add_gate_argument, require_gate
from dermai.io.atomic import write_json
from dermai.models import features

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
        required=True,
        help="output: resolved params, classes and input shape of the model (every reader "
        "looks for train_params.json beside the model unless told otherwise)",
    )
    p.add_argument("--live", required=True, help="dvclive output folder")
    add_gate_argument(p)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    from dvclive import Live  # TensorFlow and dvclive: only when the stage runs

    from dermai.models import training
    from dermai.models.data import read_meta

    t_start = time.time()
    records = read_meta(args.tfrecords)
    training.check_colour(records, prm.model)
    strategy = training.setup_tf(prm.train, prm.base.seed)
    plan = features.plan(prm, records, args.pretrained, strategy.scope)
    data = training.load_data(plan, prm.train, args.tfrecords, args.features)
    if prm.model.metadata:
        data = training.with_metadata(data, prm, args.tfrecords)
    live = Live(args.live, dvcyaml=False, save_dvc_exp=False, report=None)
    model, history = training.fit(
        plan, data, prm.train, prm.train.seed, live, dropout=prm.model.dropout
    )
    training.save_model(model, Path(args.model))
    ensemble = {"seeds": history.seeds, "best_epochs": [t.best_epoch for t in history.trackers]}
    write_json(
        args.train_params,
        {
            "params": params_mod.as_dict(prm),
            "classes": plan.classes,
            "input_shape": list(plan.shape),
            # every runtime feeds the model as its TFRecords were (runtime.bundle reads it)
            "colour_constancy": plan.colour_constancy,
            "best_epoch": history.best_epoch,
            # model.metadata's encoding (core.metadata), the model's second input
            **({"metadata": data.metadata.to_dict()} if data.metadata else {}),
            **({"ensemble": ensemble} if prm.train.ensemble > 1 else {}),
            "disclaimer": DISCLAIMER,
        },
    )
    live.end()
    log.info(
        "trained in %.0f s; best epoch %d, val balanced acc %.4f",
        time.time() - t_start,
        history.best_epoch,
        history.best,
    )
