"""Fitting the out-of-distribution guard (`core.ood`) on a trained model's outputs: its logits,
its penultimate features, or the pooled activations of its frozen ImageNet trunk (the default,
`evaluate.ood_space: trunk`), which do not depend on what the classifier learned.

`evaluate` fits it and writes `models/ood.json`; `bench/ood_eval.py` compares the methods on the
same inputs. The scoring rule itself is pure (`core.ood`), so every runtime applies it alike.
It is fitted on the un-augmented images even when `evaluate.tta` averages the predictions over
views: predict, serve and the on-device page all score the image as given (view 0 of any TTA,
`Predictor.outputs`), so the threshold keeps the same share of val they see; only its
temperature is the one fitted on the TTA outputs, and it is stored in the guard itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from dermai import params as params_mod
from dermai.core import ood
from dermai.errors import DermaiError
from dermai.models import data as tfdata
from dermai.runtime.inference import features_and_logits, trunk_output

if TYPE_CHECKING:
    from dermai.core.metadata import Encoder

log = logging.getLogger(__name__)


FITTED_ON = {
    "ppca": "train (PPCA density); threshold on val",
    "mahalanobis": "train (means, covariance); threshold on val",
}


def guard_inputs(
    model: Any, folder: str, split: str, unknown: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Penultimate features, logits, pooled frozen-trunk features and labels of one split, in
    file order (one forward pass). A model with metadata is fed `unknown` (the encoded vector
    of no answers): the guard judges the image alone."""
    import keras

    from dermai.models.classifier import METADATA_INPUT, metadata_width

    fl = features_and_logits(model)
    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    if width := metadata_width(model):
        if unknown is None:
            raise DermaiError("the model takes metadata: the guard needs its unknown vector")
        meta = keras.Input((width,), name=METADATA_INPUT)
        three = keras.Model([inp, meta], [*fl([inp, meta]), trunk_output(model, inp)])
        rows = tf.constant(np.asarray(unknown, np.float32)[None, :])

        def call(x: Any) -> Any:
            return three([x, tf.tile(rows, [tf.shape(x)[0], 1])], training=False)

        fn = tf.function(call, reduce_retracing=True)
    else:
        three = keras.Model(inp, [*fl(inp), trunk_output(model, inp)])
        fn = tf.function(lambda x: three(x, training=False), reduce_retracing=True)
    out: dict[str, list[np.ndarray]] = {"features": [], "logits": [], "trunk": [], "y": []}
    for x, y in tfdata.dataset(folder, split, 64, shuffle=False):
        for key, v in zip(("features", "logits", "trunk"), fn(x), strict=True):
            out[key].append(v.numpy().astype(np.float64))
        out["y"].append(y.numpy())
    if not out["y"]:
        raise DermaiError(f"TFRecords split {split!r} in {folder} is empty")
    got = {k: np.concatenate(v) for k, v in out.items()}
    got["y"] = got["y"].astype(np.int64)
    return got


def fit_guard(
    model: Any,
    folder: str,
    cfg: params_mod.EvaluateParams,
    temperature: float,
    metadata: Encoder | None = None,
) -> dict[str, Any]:
    """The OOD guard (`core.ood`): fitted on TRAIN features (of `ood_space`: the pooled frozen
    trunk or the penultimate), threshold keeping `ood_keep` of VAL; its acceptance of TEST is
    recorded with it. `metadata`: a metadata model's encoder (fed no answers: `guard_inputs`)."""
    log.info("OOD guard (%s): scoring the train, val and test images", cfg.ood_method)
    unknown = None if metadata is None else metadata.unknown()
    d = {s: guard_inputs(model, folder, s, unknown) for s in ("train", "val", "test")}
    key = "trunk" if cfg.ood_space == "trunk" else "features"
    for s in d:
        d[s]["space"] = d[s][key]
    g = ood.fit(
        cfg.ood_method,
        train_logits=d["train"]["logits"],
        train_features=d["train"]["space"],
        train_labels=d["train"]["y"],
        val_logits=d["val"]["logits"],
        val_features=d["val"]["space"],
        keep=cfg.ood_keep,
        temperature=temperature,
        n_components=cfg.ood_components,
        space=cfg.ood_space,
    )
    acc = {
        s: round(float(g.accept(d[s]["logits"], d[s]["space"]).mean()), 6) for s in ("val", "test")
    }
    g.measured = {
        "accepted_val": acc["val"],
        "accepted_test": acc["test"],
        "fitted_on": FITTED_ON.get(g.method, "threshold on val"),
        "n_train": len(d["train"]["y"]),
    }
    log.info(
        "OOD guard %s (%s): threshold %.4f keeps %.1f%% of val, %.1f%% of test",
        g.method,
        g.space,
        g.threshold,
        100 * acc["val"],
        100 * acc["test"],
    )
    return g.to_dict()
