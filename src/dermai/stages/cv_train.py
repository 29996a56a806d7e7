"""Train every cross-validation fold (`split.folds: K`, K >= 2) and write its out-of-fold
predictions: one DVC stage for all K folds, so `dvc exp run -S split.folds=5` needs no list.

Each fold's model trains on the other folds' images from the shared feature cache (computed once
for every image by `dermai features` with split.folds on); an inner validation set carved from
those training folds (whole groups) chooses the epoch and the temperature, so nothing about the
held-out fold does. It then predicts the held-out fold: `fold_<k>/oof.csv` (calibrated
probabilities) and `fold_<k>/fold.json` (sizes, kept epoch, temperature). The folder is written
whole at the end, so an interrupted run re-trains every fold; a head param re-runs the folds'
heads, never the features. With `split.folds: 0` the folder holds only its README.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dermai import params as params_mod
from dermai.core.schema import FOLDS_FILE
from dermai.errors import DermaiError, add_gate_argument, require_gate
from dermai.io.atomic import atomic_dir
from dermai.io.tables import read_table

log = logging.getLogger(__name__)

README = """# models/cv: cross-validation folds (written by `dermai cv-train`)

With `split.folds: K` (params.yaml; 0 = off, the default), e.g. `dvc exp run -S split.folds=5`,
the `cv-train` stage trains the K folds in turn and writes one folder per fold here:

- `fold_<k>/oof.csv`: the held-out fold's images with their calibrated probabilities, predicted
  by a model that never saw their leakage group;
- `fold_<k>/fold.json`: its sizes, and the epoch and temperature chosen on its inner validation
  set (carved from the training folds, never from the held-out fold).

The `cv` stage pools them into `reports/cv/` (report.json, predictions.csv). With folds off this
README is all the folder holds.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (base, model, train)")
    p.add_argument("--splits", required=True, help="folder with folds.csv (`dermai split`)")
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument("--features", required=True, help="folder written by `dermai features`")
    p.add_argument("--pretrained", required=True, help="converted ImageNet weights")
    p.add_argument("--out", required=True, help="output folder (README.md, fold_<k>/)")
    add_gate_argument(p)


def run(args: argparse.Namespace) -> None:
    require_gate(args.gate)
    prm = params_mod.load(args.params)
    k = prm.split.folds
    if k and not prm.train.feature_cache:
        raise DermaiError("cross-validation trains on the feature cache: set train.feature_cache")
    with atomic_dir(args.out) as tmp:
        (tmp / "README.md").write_text(README, encoding="utf-8")
        if not k:
            log.info("cross-validation off (split.folds: 0): %s holds only its README", args.out)
            return
        from dermai.models import cv

        cols = ("image_id", "fold", "leakage_group")
        table = read_table(Path(args.splits) / FOLDS_FILE, cols, "folds")
        cv.train_folds(prm, k, args.tfrecords, args.features, table, args.pretrained, tmp)
