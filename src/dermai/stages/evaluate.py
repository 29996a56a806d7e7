"""Evaluate the trained model on the validation and test TFRecords.

Reports accuracy, balanced accuracy, macro F1, per-class precision/recall/F1/support, macro and
per-class one-vs-rest ROC AUC and the confusion matrix, overall and per age group and data
source, with seeded bootstrap 95% intervals for accuracy, balanced accuracy and macro AUC.
Fits temperature scaling on validation logits, saves it next to the model (`calibration.json`,
read by `dermai.runtime.inference`), and reports test ECE before and after. Metrics and plots go
through dvclive; the most confident test mistakes are shown with Grad-CAM overlays; the model
card is generated from the run. With `evaluate.tta` the val and test logits are the test-time
augmentation's (`runtime.inference.TtaLogits`), the temperature is fitted on them and the mode is
saved in `calibration.json`; the OOD guard is fitted on the un-augmented images, as every runtime
scores them. A held-out site (`split.external_source`, TFRecords split `external`) is
reported exactly like test, as generalisation to a site never trained on; the temperature and
the OOD guard stay fitted on val only. Not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.core import calibration as C
from dermai.core.modelcard import render
from dermai.core.schema import EXTERNAL
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json
from dermai.runtime.report import live_session, publish, settings_from

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

SPLITS = ("val", "test")  # + EXTERNAL when split.external_source held a site out
BATCH = 64
PROGRESS_EVERY_S = 10.0  # a progress line at most this often while predicting a split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (sections: base, evaluate)")
    p.add_argument("--model", required=True, help="trained .keras model")
    p.add_argument(
        "--train-params",
        default=None,
        help="the model's train_params.json (default: beside the model)",
    )
    p.add_argument("--tfrecords", required=True, help="folder written by `dermai tfrecords`")
    p.add_argument(
        "--split-summary",
        required=True,
        help="split x condition x age group counts (data/reports/split_summary.csv)",
    )
    p.add_argument("--leakage", required=True, help="leakage report (data/reports/leakage.json)")
    p.add_argument(
        "--index-summary", default=None, help="index summary (sources, rejects) for the model card"
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="where to save the temperature (default: calibration.json beside the model)",
    )
    p.add_argument(
        "--out", required=True, help="report folder: report_{val,test}.json, predictions, errors/"
    )
    p.add_argument("--card", required=True, help="model card to write (Markdown)")
    p.add_argument("--live", required=True, help="dvclive output folder (metrics.json, plots/)")
    p.add_argument(
        "--ood",
        default=None,
        help="where to save the out-of-distribution guard (default: ood.json beside the model)",
    )
    p.add_argument(
        "--card-json",
        default=None,
        help="machine-readable card for the demo (default: model_card.json beside the model)",
    )


class SplitPredictions(TypedDict):
    """What `collect` reads back for one split."""

    logits: np.ndarray  # float64 (n, classes)
    y: np.ndarray  # int64 (n,)
    groups: dict[str, list[str]]  # age_group, source
    ids: list[str]
    images: np.ndarray | None  # uint8 (n, h, w, 3) when kept


def _row_getter(images: np.ndarray | None) -> Callable[[int], np.ndarray] | None:
    """`publish` draws the error images by row; None when the split kept no images."""
    if images is None:
        return None
    return lambda i: images[i]


def collect(logits_fn: Any, folder: str, split: str, keep_images: bool) -> SplitPredictions:
    """Logits, labels, subgroup columns (and uint8 images if asked) for one TFRecord split."""
    import tensorflow as tf

    from dermai.models import data as tfdata

    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "y", "images")}
    out: dict[str, list[str]] = {k: [] for k in ("age_group", "source", "id")}
    fn = tf.function(lambda x: logits_fn(x, training=False), reduce_retracing=True)
    total = tfdata.read_meta(folder)["splits"][split].get("images")
    started = last_log = time.monotonic()
    done = 0
    for x, y, meta in tfdata.dataset(folder, split, BATCH, with_meta=True):
        arrays["logits"].append(fn(x).numpy().astype(np.float64))
        done += len(y)
        if time.monotonic() - last_log >= PROGRESS_EVERY_S:
            last_log = time.monotonic()
            log.info(
                "predicting %s: %d/%s images, %.0f s", split, done, total or "?", last_log - started
            )
        arrays["y"].append(y.numpy())
        for k, col in (("age_group", "age_group"), ("source", "source"), ("id", "image_id")):
            out[k] += [v.decode("utf-8") for v in meta[col].numpy().tolist()]
        if keep_images:
            arrays["images"].append(np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8))
    if not arrays["y"]:
        raise DermaiError(f"TFRecords split {split!r} in {folder} is empty")
    log.info("predicted %s: %d images in %.0f s", split, done, time.monotonic() - started)
    return {
        "logits": np.concatenate(arrays["logits"]),
        "y": np.concatenate(arrays["y"]).astype(np.int64),
        "groups": {"age_group": out["age_group"], "source": out["source"]},
        "ids": out["id"],
        "images": np.concatenate(arrays["images"]) if keep_images else None,
    }


def read_split_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DermaiError(f"split summary not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    settings = settings_from(prm)
    import keras
    import tensorflow as tf

    from dermai.models import data as tfdata
    from dermai.runtime import loader
    from dermai.runtime.gradcam import GradCam
    from dermai.runtime.inference import logits_model, with_tta

    keras.utils.set_random_seed(prm.base.seed)
    tf.config.experimental.enable_op_determinism()
    model_path = Path(args.model)
    model, train_meta = loader.load_keras(model_path, args.train_params)
    classes = list(train_meta["classes"])
    if tfdata.read_meta(args.tfrecords)["classes"] != classes:
        raise DermaiError("TFRecords and model were made for different classes")
    lm = with_tta(logits_model(model), prm.evaluate.tta)  # TTA logits unless tta is none
    held_out = EXTERNAL in tfdata.read_meta(args.tfrecords)["splits"]
    splits = (*SPLITS, EXTERNAL) if held_out else SPLITS
    data = {s: collect(lm, args.tfrecords, s, keep_images=s != "val") for s in splits}

    t = C.fit_temperature(data["val"]["logits"], data["val"]["y"])
    val_nll = (
        C.nll(data["val"]["logits"], data["val"]["y"], 1.0),
        C.nll(data["val"]["logits"], data["val"]["y"], t),
    )
    log.info("temperature %.4f fitted on val: NLL %.4f -> %.4f", t, *val_nll)
    if np.isclose(t, C.T_BOUNDS, rtol=1e-3).any():
        log.warning(
            "temperature %.4f is at its search bound %s: the validation set is "
            "(nearly) perfectly separated or tiny, so NLL keeps falling; treat the "
            "calibrated probabilities with suspicion",
            t,
            C.T_BOUNDS,
        )

    out = Path(args.out)
    live = live_session(args.live)
    cam = GradCam(model)
    reports = {}
    for s in splits:
        d = data[s]
        log.info(
            "%s: metrics with %d bootstrap resamples, subgroups, calibration%s",
            s,
            settings.n_bootstrap,
            ", Grad-CAM of the errors" if s != "val" else "",
        )
        reports[s] = publish(
            s,
            y=d["y"],
            logits=d["logits"],
            classes=classes,
            temperature=t,
            ids=d["ids"],
            groups=d["groups"],
            live=live,
            out_dir=out,
            settings=settings,
            image_of=_row_getter(d["images"]),
            cam=cam,
            errors_dir={"test": out / "errors", EXTERNAL: out / "errors_external"}.get(s),
        )
    live.summary["temperature"] = round(t, 6)
    live.end()

    test_cal = reports["test"]["calibration"]
    cal = {
        "temperature": round(t, 6),
        "fitted_on": "val",
        "bins": settings.ece_bins,
        "val_nll_before": round(val_nll[0], 6),
        "val_nll_after": round(val_nll[1], 6),
        "test_ece_before": test_cal["ece_before"],
        "test_ece_after": test_cal["ece_after"],
        "classes": classes,
        "model": model_path.name,
    }
    if prm.evaluate.tta != "none":  # runtime.inference.read_tta: predict and serve apply it too
        cal["tta"] = prm.evaluate.tta
    write_json(loader.calibration_path(model_path, args.calibration), cal)

    index_summary: dict[str, Any] = {}
    if args.index_summary:
        index_summary = json.loads(Path(args.index_summary).read_text())
    leakage = json.loads(Path(args.leakage).read_text())
    card = render(
        disclaimer=DISCLAIMER,
        model=train_meta,
        split_rows=read_split_rows(Path(args.split_summary)),
        sources=index_summary.get("by_source", {}),
        leakage=leakage,
        reports=reports,
        calibration=cal,
        rejected=index_summary.get("rejected"),
    )
    with atomic_open(args.card, "w", encoding="utf-8") as fh:
        fh.write(card)
    from dermai.core.modelcard import summary

    write_json(
        Path(args.card_json) if args.card_json else model_path.with_name("model_card.json"),
        summary(train_meta, reports) | {"model": model_path.name},
    )
    from dermai.runtime.guard import fit_guard

    guard = fit_guard(model, args.tfrecords, prm.evaluate, t)
    write_json(Path(args.ood) if args.ood else model_path.with_name("ood.json"), guard)
    log.info("wrote %s, %s and %s", args.card, out, args.live)
