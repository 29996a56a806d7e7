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
from typing import Any, TypedDict

import numpy as np

from dermai import params as params_mod
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json
from dermai.models import archive
from dermai.runtime import loader

log = logging.getLogger(__name__)

# The goals; reported as booleans in the metrics, warned about, never fatal (a tiny
# sample test split makes a single disagreement cost several points).
GOALS = {"float32_agreement": 0.99, "int8_agreement": 0.97, "int8_size_ratio": 1 / 3}


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


# --------------------------------------------------------------------------- guard


def read_guard(
    model_path: Path, ood_path: str | None, train_meta: dict[str, Any]
) -> dict[str, Any] | None:
    """The guard document the .tflite files carry: `ood.json` as `evaluate` wrote it (method,
    its fitted state, threshold, temperature), plus the kind of training images and the exact
    refusal text, so a runtime needs nothing but the model file to apply the same rule."""
    import json

    from dermai.core.modelcard import dataset_of
    from dermai.core.ood import Guard
    from dermai.runtime.inference import OOD_FILE, ood_message

    f = Path(ood_path) if ood_path else model_path.with_name(OOD_FILE)
    if not f.is_file():
        if ood_path:
            raise DermaiError(f"OOD guard not found: {f} (written by `dermai evaluate`)")
        log.warning("no %s: the exported models carry no out-of-distribution guard", f)
        return None
    try:
        doc = json.loads(f.read_text("utf-8"))
        Guard.from_dict(doc)  # validates method, space and the fitted state
    except (KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{f}: not a valid OOD guard ({exc})") from exc
    kind = dataset_of(train_meta.get("params", {}))["image_kind"]
    return {**doc, "image_kind": kind, "message": ood_message(kind)}


# --------------------------------------------------------------------------- parity


class Parity(TypedDict):
    """One exported model against the Keras model on the test split."""

    agreement: float
    accuracy: float
    balanced_accuracy: float
    max_abs_logit_diff: float


class KindReport(Parity):
    """The metrics entry of one exported kind (float32, int8)."""

    bytes: int


def parity(reference_logits: np.ndarray, logits: np.ndarray, y: np.ndarray) -> Parity:
    from dermai.core import metrics as M

    n = reference_logits.shape[1]
    ref, pred = reference_logits.argmax(1), logits.argmax(1)
    return {
        "agreement": float(np.mean(ref == pred)),
        "accuracy": M.accuracy(y, pred),
        "balanced_accuracy": M.balanced_accuracy(y, pred, n),
        # to 1e-4: below that, float32 logits differ between CPUs (XNNPACK picks its kernels by
        # instruction set; 1.1e-5 where dvc.lock was made, 9.5e-6 on an AVX2 machine), and
        # this file is a stage output that must not depend on the machine
        "max_abs_logit_diff": round(float(np.max(np.abs(reference_logits - logits))), 4),
    }


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.export

    import keras

    from dermai.core import metrics as M
    from dermai.models import data as tfdata
    from dermai.runtime.convert import KINDS, export_bytes
    from dermai.runtime.tflite import TfliteModel

    model_path = Path(args.model)
    if not model_path.is_file():
        raise DermaiError(f"model not found: {model_path}")
    train_meta = loader.read_train_params(model_path, args.train_params)
    classes = train_meta["classes"]
    tf_meta = tfdata.read_meta(args.tfrecords)
    if tf_meta["classes"] != classes:
        raise DermaiError("TFRecords and model were made for different classes")
    colour = loader.colour_constancy(train_meta)
    if tf_meta.get("colour_constancy", "none") != colour:
        raise DermaiError(
            "TFRecords and model differ in colour constancy (model.colour_constancy); "
            "rerun tfrecords and train"
        )
    temperature = loader.read_temperature(model_path, args.calibration)
    keras.utils.set_random_seed(prm.base.seed)
    model = archive.load_keras(model_path)

    rep = tfdata.representative_images(args.tfrecords, cfg.representative_images, prm.base.seed)
    log.info("converting (float32, and int8 calibrated on %d TRAIN images)", len(rep))
    from dermai.core.modelcard import dataset_of

    guard = read_guard(model_path, args.ood, train_meta)
    blobs = export_bytes(
        model,
        classes,
        temperature,
        rep,
        ood=guard,
        training_data=dataset_of(train_meta.get("params", {})),
        colour_constancy=colour,
        float_stages=cfg.float_stages,
    )
    paths = {"float32": Path(args.float_out), "int8": Path(args.int8_out)}
    for kind, blob in blobs.items():
        with atomic_open(paths[kind], "wb") as fh:
            fh.write(blob)
        log.info(
            "%s: %s (%d bytes, sha256 %s)",
            kind,
            paths[kind],
            len(blob),
            hashlib.sha256(blob).hexdigest()[:16],
        )

    x_test, y_test = tfdata.split_arrays(args.tfrecords, "test")
    from dermai.runtime.inference import logits_model

    ref = logits_model(model).predict(x_test, batch_size=64, verbose=0)
    ref_pred = ref.argmax(1)
    report: dict[str, Any] = {
        "test_images": len(y_test),
        "representative_images": len(rep),
        "float_stages": cfg.float_stages,
        "temperature": temperature,
        "keras": {
            "accuracy": M.accuracy(y_test, ref_pred),
            "balanced_accuracy": M.balanced_accuracy(y_test, ref_pred, len(classes)),
        },
    }
    kinds: dict[str, KindReport] = {}
    for kind in KINDS:
        logits = TfliteModel(paths[kind], num_threads=1)(x_test)
        entry: KindReport = {**parity(ref, logits, y_test), "bytes": len(blobs[kind])}
        report[kind] = kinds[kind] = entry
        log.info(
            "%s: agreement %.4f, balanced acc %.4f (Keras %.4f), %.2f MB",
            kind,
            entry["agreement"],
            entry["balanced_accuracy"],
            report["keras"]["balanced_accuracy"],
            entry["bytes"] / 1e6,
        )
    f, q = kinds["float32"], kinds["int8"]
    size_ratio = q["bytes"] / f["bytes"]
    # Latency is a timing, not a stage output: stage outputs are byte-identical run to run, so it
    # is measured by `python bench/bench_tflite.py` (float32 vs int8, 1 and 2 threads).
    report["int8_vs_float32"] = {"size_ratio": size_ratio}
    goals = {
        "float32_agreement": f["agreement"] >= GOALS["float32_agreement"],
        "int8_agreement": q["agreement"] >= GOALS["int8_agreement"],
        "int8_size_ratio": size_ratio <= GOALS["int8_size_ratio"],
    }
    report["goals_met"] = goals
    for name, ok in goals.items():
        if not ok:
            log.warning("export goal not met: %s (see %s)", name, args.metrics)
    write_json(args.metrics, report)
