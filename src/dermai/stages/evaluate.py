"""Evaluate the trained model on the validation and test TFRecords.

Reports accuracy, balanced accuracy, macro F1, per-class precision/recall/F1/support, macro and
per-class one-vs-rest ROC AUC and the confusion matrix, overall and per age group and data
source, with seeded bootstrap 95% intervals (`core.evaluation`). Fits temperature scaling on the
val logits (`calibration.json`, which every runtime's bundle reads) and reports test ECE before
and after; fits the OOD guard (`ood.json`) on the un-augmented images, as every runtime scores
them. Metrics and plots go through dvclive; the most confident test mistakes are shown with
Grad-CAM; the model card is generated from the run. With `evaluate.tta` the logits are the
test-time augmentation's, the temperature is fitted on them and the mode saved with it. A
held-out site (`split.external_source`, split `external`) is reported exactly like test; the
temperature, the guard and `evaluate.operating_point`'s threshold are fitted on val only. The
model runs through its bundle (`runtime.bundle`, via `runtime.evaluation`). Not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.core import modelcard
from dermai.core.schema import EXTERNAL
from dermai.io.atomic import atomic_open, write_json
from dermai.io.tables import read_records
from dermai.runtime.gradcam import GradCam
from dermai.runtime.report import decision_report, live_session, publish, settings_from

log = logging.getLogger(__name__)


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


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    settings = settings_from(prm)
    import keras  # TensorFlow: only when the stage runs
    import tensorflow as tf

    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import evaluation
    from dermai.runtime.guard import fit_guard

    keras.utils.set_random_seed(prm.base.seed)
    tf.config.experimental.enable_op_determinism()
    model_path = Path(args.model)
    # Uncalibrated, no guard: this stage fits both. Its logits are the TTA's unless tta is none.
    bundle = bundle_mod.load(
        model_path,
        train_params=args.train_params,
        calibrated=False,
        tta=prm.evaluate.tta,
        guard=False,
    )
    data = evaluation.predict_splits(bundle, args.tfrecords)
    t, val_nll = evaluation.fit_temperature(data["val"])

    out = Path(args.out)
    live = live_session(args.live)
    cam = GradCam(bundle.keras_model)
    reports = {}
    for s, d in data.items():
        extra = ", Grad-CAM of the errors" if s != "val" else ""
        what = "bootstrap resamples, subgroups, calibration"
        log.info("%s: metrics with %d %s%s", s, settings.n_bootstrap, what, extra)
        reports[s] = publish(
            s,
            y=d["y"],
            logits=d["logits"],
            classes=bundle.classes,
            temperature=t,
            ids=d["ids"],
            groups=d["groups"],
            live=live,
            out_dir=out,
            settings=settings,
            image_of=None if d["images"] is None else d["images"].__getitem__,
            cam=cam,
            errors_dir={"test": out / "errors", EXTERNAL: out / "errors_external"}.get(s),
        )
    live.summary["temperature"] = round(t, 6)
    live.end()
    decision = decision_report(data, t, bundle.classes, settings, prm.evaluate.operating_point, out)

    test_cal = reports["test"]["calibration"]
    cal = evaluation.calibration_doc(t, val_nll, test_cal, settings.ece_bins, bundle)
    write_json(bundle_mod.side_path(model_path, bundle_mod.CALIBRATION_FILE, args.calibration), cal)

    index_summary = json.loads(Path(args.index_summary).read_text()) if args.index_summary else {}
    card = modelcard.render(
        disclaimer=DISCLAIMER,
        model=bundle.meta,
        split_rows=read_records(args.split_summary, (), "split summary"),
        sources=index_summary.get("by_source", {}),
        leakage=json.loads(Path(args.leakage).read_text()),
        reports=reports,
        calibration=cal,
        rejected=index_summary.get("rejected"),
        decision=decision,
    )
    with atomic_open(args.card, "w", encoding="utf-8") as fh:
        fh.write(card)
    write_json(
        bundle_mod.side_path(model_path, bundle_mod.MODEL_CARD_FILE, args.card_json),
        modelcard.summary(bundle.meta, reports) | {"model": model_path.name},
    )
    guard = fit_guard(bundle.keras_model, args.tfrecords, prm.evaluate, t, bundle.metadata)
    write_json(bundle_mod.side_path(model_path, bundle_mod.OOD_FILE, args.ood), guard)
    log.info("wrote %s, %s and %s", args.card, out, args.live)
