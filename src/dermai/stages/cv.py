"""The cross-validation report: pool the folds' out-of-fold predictions (core.cv).

With `split.folds: K` (K >= 2) every image was predicted once by the fold that held it out; this
writes reports/cv/report.json: accuracy, balanced accuracy, AUC with 95% CIs from a bootstrap
over leakage groups (patients, lesions), per class, per age group, per fold and the fold spread;
and reports/cv/predictions.csv, every image's out-of-fold prediction in `dermai compare`'s
format plus its leakage group (`dermai compare EXP_A EXP_B --path reports/cv/predictions.csv`
pairs two CV experiments image by image, resampling whole groups). With `split.folds: 0` it
writes only report.json `{"folds": 0}` and a note, and metrics.json gains no cv key.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from dermai import params as params_mod
from dermai.core import cv
from dermai.core.schema import FOLDS_FILE, METADATA_UNKNOWN, OOF_UNKNOWN
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_dir, write_csv, write_json
from dermai.io.tables import read_table

log = logging.getLogger(__name__)

REPORT = "report.json"  # the headline stage reads it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (split, evaluate, base)")
    p.add_argument("--splits", required=True, help="folder with folds.csv (`dermai split`)")
    p.add_argument("--folds-dir", required=True, help="folder of fold_<k>/ (`dermai cv-train`)")
    p.add_argument("--out", required=True, help="output folder (report.json, predictions.csv)")


def pool(
    dirs: list[Path],
    name: str,
    folds: pd.DataFrame,
    classes: list[str],
    infos: list[dict],
    prm: params_mod.Params,
) -> tuple[pd.DataFrame, dict]:
    """The folds' out-of-fold file `name` pooled, and its report."""
    frames = [
        read_table(d / name, ("image_id", "label"), f"fold {f} predictions")
        for f, d in enumerate(dirs)
    ]
    oof = pd.concat(frames, ignore_index=True)
    for c in classes:
        oof[f"p_{c}"] = oof[f"p_{c}"].astype(float)
    try:
        report = cv.report(
            oof, folds, classes, infos, n_bootstrap=prm.evaluate.bootstrap, seed=prm.base.seed
        )
    except ValueError as exc:
        raise DermaiError(f"cv: {exc}") from exc
    return oof, report


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    k = prm.split.folds
    if not k:
        with atomic_dir(args.out) as tmp:
            write_json(tmp / REPORT, {"folds": 0, "note": "split.folds is 0: CV is off"})
        log.info("cross-validation off (split.folds: 0)")
        return
    folds = read_table(Path(args.splits) / FOLDS_FILE, ("image_id", "fold"), "folds")
    dirs = [Path(args.folds_dir) / f"fold_{f}" for f in range(k)]
    infos = [json.loads((d / "fold.json").read_text(encoding="utf-8")) for d in dirs]
    classes = list(infos[0]["classes"])
    # model.metadata on: every fold also predicted its held-out images with every field
    # unknown; pooled the same way, as report_metadata_unknown.json (compare pairs the two).
    pools = {"": "oof.csv"}
    if all((d / OOF_UNKNOWN).is_file() for d in dirs):
        pools[f"_{METADATA_UNKNOWN}"] = OOF_UNKNOWN
    with atomic_dir(args.out) as tmp:
        for suffix, name in pools.items():
            oof, report = pool(dirs, name, folds, classes, infos, prm)
            write_json(tmp / (REPORT if not suffix else f"report{suffix}.json"), report)
            pred = oof.merge(folds[["image_id", "leakage_group"]], on="image_id", how="left")
            cols = ["image_id", "label", *(f"p_{c}" for c in classes), "leakage_group"]
            write_csv(
                tmp / f"predictions{suffix}.csv", pred[cols].sort_values("image_id", kind="stable")
            )
            if suffix:
                ba = report["balanced_accuracy"]
                log.info("with every metadata field unknown: balanced accuracy %.3f", ba)
            else:
                main_report = report
    report = main_report
    ci = report["ci"]["balanced_accuracy"]
    log.info(
        "%d-fold CV over %d images (%d groups): accuracy %.3f, balanced accuracy %.3f "
        "[%.3f, %.3f], AUC %.3f",
        k,
        report["n"],
        report["groups"],
        report["accuracy"],
        report["balanced_accuracy"],
        ci["low"],
        ci["high"],
        report["macro_auc"],
    )
