"""Export the trained model to LiteRT: a float32 .tflite and a full-integer int8 .tflite.

Both output LOGITS (temperature from `calibration.json` is stored in their embedded metadata and
applied after, with the softmax), take raw [0, 255] RGB and carry their classes and preprocessing
inside the file. The int8 model is quantized with a seeded random sample of TRAIN images
(`export.representative_images`); its input and output tensors are int8 too, the mobile path.
Its first `export.float_stages` backbone stages stay float inside (selective quantization,
`runtime.convert`): that is where int8 loses agreement.
Parity with the Keras model on the test split (top-1 agreement, balanced accuracy) and file
sizes go to the metrics JSON; latency is a timing, so `bench/bench_tflite.py` measures it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from dermai import params as params_mod
from dermai.core.modelcard import dataset_of
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (sections: base, export)")
    p.add_argument("--model", required=True, help="trained .keras model")
    p.add_argument(
        "--train-params",
        default=None,
        help="the model's train_params.json (default: beside the model)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration.json with the temperature (default: beside the model; none there: T = 1)",
    )
    p.add_argument(
        "--ood",
        default=None,
        help="the out-of-distribution guard (ood.json, written by `dermai evaluate`) "
        "to embed in the models' metadata (default: beside the model; none "
        "there: no guard travels with the model)",
    )
    p.add_argument(
        "--tfrecords",
        required=True,
        help="TFRecords folder: TRAIN gives the int8 representative set, TEST parity",
    )
    p.add_argument("--float-out", required=True, help="output float32 .tflite")
    p.add_argument("--int8-out", required=True, help="output full-integer int8 .tflite")
    p.add_argument("--metrics", required=True, help="output metrics JSON")


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.export
    import keras  # TensorFlow: only when the stage runs

    from dermai.core.parity import export_report, guard_parity
    from dermai.models import data as tfdata
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import evaluation
    from dermai.runtime.convert import export_bytes

    keras.utils.set_random_seed(prm.base.seed)
    # The Keras model as every runtime sees it, without the TTA (exported models never apply it)
    keras_bundle = bundle_mod.load(
        args.model,
        train_params=args.train_params,
        calibration=args.calibration,
        tta="none",
        ood=args.ood,
    )
    tf_meta = tfdata.read_meta(args.tfrecords)
    if tf_meta["classes"] != keras_bundle.classes:
        raise DermaiError("TFRecords and model were made for different classes")
    if tf_meta.get("colour_constancy", "none") != keras_bundle.colour_constancy:
        raise DermaiError(
            "TFRecords and model differ in colour constancy (model.colour_constancy); "
            "rerun tfrecords and train"
        )
    rep, rep_ids = tfdata.representative_with_ids(
        args.tfrecords, cfg.representative_images, prm.base.seed
    )
    log.info("converting (float32, and int8 calibrated on %d TRAIN images)", len(rep))
    enc = keras_bundle.metadata
    rep_m = (
        None if enc is None else evaluation.representative_metadata(args.tfrecords, rep_ids, enc)
    )
    blobs = export_bytes(
        keras_bundle.keras_model,
        keras_bundle.classes,
        keras_bundle.temperature,
        rep,
        ood=bundle_mod.export_guard(args.model, args.ood, keras_bundle.meta),
        training_data=dataset_of(keras_bundle.meta.get("params", {})),
        colour_constancy=keras_bundle.colour_constancy,
        float_stages=cfg.float_stages,
        metadata=None if enc is None else enc.to_dict(),
        representative_metadata=rep_m,
    )
    paths = {"float32": Path(args.float_out), "int8": Path(args.int8_out)}
    for kind, blob in blobs.items():
        with atomic_open(paths[kind], "wb") as fh:
            fh.write(blob)
        sha = hashlib.sha256(blob).hexdigest()[:16]
        log.info("%s: %s (%d bytes, sha256 %s)", kind, paths[kind], len(blob), sha)

    # Parity on the test split: every model through its bundle's `analyse`, as runtimes run it
    x_test, y_test = tfdata.split_arrays(args.tfrecords, "test")
    m_test = None if enc is None else evaluation.test_metadata(args.tfrecords, y_test, enc)
    ref_run = keras_bundle.analyse(x_test, m_test)
    runs = {
        kind: bundle_mod.load(path, num_threads=1).analyse(x_test, m_test)
        for kind, path in paths.items()
    }
    ref, exported = ref_run.logits, {kind: a.logits for kind, a in runs.items()}
    report = export_report(
        ref,
        exported,
        {kind: len(blob) for kind, blob in blobs.items()},
        y_test,
        representative_images=len(rep),
        float_stages=cfg.float_stages,
        temperature=keras_bundle.temperature,
    )
    if keras_bundle.guard is not None:  # the guard's test decisions, each .tflite against Keras
        report["guard"] = {
            kind: guard_parity(ref_run.in_distribution, a.in_distribution)
            for kind, a in runs.items()
        }
    for kind in exported:
        log.info(
            "%s: agreement %.4f, balanced acc %.4f (Keras %.4f), %.2f MB",
            kind,
            report[kind]["agreement"],
            report[kind]["balanced_accuracy"],
            report["keras"]["balanced_accuracy"],
            report[kind]["bytes"] / 1e6,
        )
    for name, ok in report["goals_met"].items():
        if not ok:
            log.warning("export goal not met: %s (see %s)", name, args.metrics)
    write_json(args.metrics, report)
