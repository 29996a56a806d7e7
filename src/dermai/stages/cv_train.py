"""Train one cross-validation fold (a `foreach` instance in dvc.yaml, one per `split.folds` item)
and write its out-of-fold predictions.

The fold's model trains on the other folds' images from the shared feature cache (computed once
for every image by `dermai features` with split.folds on); an inner validation set carved from
those training folds (whole groups) chooses the epoch and the temperature, so nothing about the
held-out fold does. It then predicts the held-out fold: `oof.csv` (calibrated probabilities) and
`fold.json` (sizes, kept epoch, temperature). As its own DVC stage instance, a fold is cached on
its own: changing a head param re-runs the folds' heads, not the features.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from dermai import params as params_mod
from dermai.errors import DermaiError, add_gate_argument, require_gate
from dermai.io.atomic import atomic_dir
from dermai.io.tables import read_table

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (base, model, train)")
    p.add_argument("--fold", type=int, required=True, help="the held-out fold (0..K-1)")
    p.add_argument("--folds", required=True, help="folds.csv written by `dermai split`")
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument("--features", required=True, help="folder written by `dermai features`")
    p.add_argument("--pretrained", required=True, help="converted ImageNet weights")
    p.add_argument("--out", required=True, help="output folder (oof.csv, fold.json)")
    add_gate_argument(p)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    if args.fold not in prm.split.folds:
        raise DermaiError(f"--fold {args.fold} is not one of split.folds {prm.split.folds}")
    if not prm.train.feature_cache:
        raise DermaiError("cross-validation trains on the feature cache: set train.feature_cache")
    from dermai.models import cv

    t0 = time.time()
    table = read_table(args.folds, ("image_id", "fold", "leakage_group"), "folds")
    result = cv.train_fold(prm, args.fold, args.tfrecords, args.features, table, args.pretrained)
    with atomic_dir(args.out) as tmp:
        cv.write(result, list(result.info["classes"]), Path(tmp))
    log.info(
        "fold %d: %d held-out images predicted in %.0f s (epoch %d, temperature %.3f)",
        args.fold,
        len(result.ids),
        time.time() - t0,
        result.info["best_epoch"],
        result.info["temperature"],
    )
