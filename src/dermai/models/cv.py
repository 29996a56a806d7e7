"""Cross-validation folds' models on the shared feature cache: each trains on the other folds
(less an inner validation set that chooses the epoch and the temperature) and predicts its
held-out fold; `train_folds` runs folds 0..K-1 in turn for the one `cv-train` stage.

The frozen lower backbone's activations of every image (`features.cache_cv`) were computed once;
a fold selects its rows, so K folds cost K heads + top stages, not K feature passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from dermai import params as params_mod
from dermai.core import calibration, folds
from dermai.core.evaluation import json_safe
from dermai.core.schema import OOF_UNKNOWN
from dermai.errors import DermaiError
from dermai.io.atomic import write_csv, write_json
from dermai.models import features, metainputs, training
from dermai.models.rows import ActivationRows
from dermai.models.tracking import QuietLive

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    """The held-out fold's calibrated probabilities (rows of `ids`) and how they were chosen."""

    ids: list[str]
    labels: np.ndarray
    proba: np.ndarray
    info: dict
    proba_unknown: np.ndarray | None = None  # model.metadata on: with every field unknown


def train_fold(
    prm: params_mod.Params,
    fold: int,
    tfrecords: str,
    cache: str,
    table: pd.DataFrame,
    pretrained: str,
) -> FoldResult:
    """Train fold `fold`'s model: `table` is folds.csv (image_id, fold, leakage_group, ...)."""
    from dermai.models.data import read_meta

    records = read_meta(tfrecords)
    training.check_colour(records, prm.model)
    strategy = training.setup_tf(prm.train, prm.base.seed)
    plan = features.plan(prm, records, pretrained, strategy.scope)
    x, y, ids = features.read_cv(cache, plan.key)
    rows = table.set_index("image_id").reindex(ids)
    if rows["fold"].isna().any() or len(table) != len(ids):
        raise DermaiError(
            "folds.csv and the feature cache's images differ; rerun split and features"
        )
    of = rows["fold"].astype(int).to_numpy()
    held, rest = of == fold, np.flatnonzero(of != fold)
    inner = np.zeros(len(ids), dtype=bool)
    inner[rest] = folds.inner_validation(
        rows["condition"].to_numpy()[rest].tolist(),
        rows["age_group"].to_numpy()[rest].tolist(),
        rows["leakage_group"].to_numpy()[rest].tolist(),
        prm.base.seed + fold,
    )
    fit = (of != fold) & ~inner
    v = x.shape[0]
    train_rows = ActivationRows(x[:, fit].reshape(-1, *x.shape[2:]), np.tile(y[fit], v))
    val_rows, held_rows = ActivationRows(x[0, inner], y[inner]), ActivationRows(x[0, held], y[held])
    enc, unknown_rows = None, None
    if prm.model.metadata:  # encoded with the vocabularies of this fold's training rows
        fields = prm.model.metadata
        splits = list(records["splits"])
        cols = metainputs.by_id(tfrecords, splits, fields, ids)
        enc = metainputs.fit(
            fields, {f: [c[i] for i in np.flatnonzero(fit)] for f, c in cols.items()}
        )
        m = enc.encode_columns(cols)
        train_rows = metainputs.attach(
            train_rows, np.tile(m[fit], (v, 1)), enc, prm.train.metadata_dropout
        )
        val_rows = metainputs.attach(val_rows, m[inner], enc)
        unknown_rows = metainputs.attach(
            held_rows, np.tile(enc.unknown(), (int(held.sum()), 1)), enc
        )
        held_rows = metainputs.attach(held_rows, m[held], enc)
    data = training.TrainingData(train_rows, val_rows, int(fit.sum()), enc)
    log.info(
        "fold %d: training on %d images (%d copies), inner validation %d, held out %d",
        fold,
        fit.sum(),
        v,
        inner.sum(),
        held.sum(),
    )
    model, history = training.fit(
        plan,
        data,
        prm.train,
        prm.train.seed,
        QuietLive(),
        dropout=prm.model.dropout,
    )
    reader = training.above_cut(model)
    logits_val = np.log(np.clip(val_rows.predict(reader), 1e-12, 1))
    temperature = calibration.fit_temperature(logits_val, y[inner])
    logits = np.log(np.clip(held_rows.predict(reader), 1e-12, 1))
    info = {
        "fold": fold,
        "train_images": int(fit.sum()),
        "inner_val_images": int(inner.sum()),
        "held_out_images": int(held.sum()),
        "best_epoch": history.best_epoch,
        "inner_val_balanced_accuracy": float(history.best),
        "temperature": temperature,
        "classes": plan.classes,
    }
    proba = calibration.probabilities(logits, temperature)
    unknown = None
    if unknown_rows is not None and enc is not None:  # the same model, every field unknown
        info["metadata"] = enc.to_dict()
        logits_unknown = np.log(np.clip(unknown_rows.predict(reader), 1e-12, 1))
        unknown = calibration.probabilities(logits_unknown, temperature)
    held_ids = [ids[i] for i in np.flatnonzero(held)]
    return FoldResult(held_ids, y[held], proba, info, unknown)


def write(result: FoldResult, classes: list[str], out: Path) -> None:
    """oof.csv (image_id, label, one probability column per class) and fold.json; with
    model.metadata, also OOF_UNKNOWN (the same predictions with every field unknown)."""
    for name, proba in (("oof.csv", result.proba), (OOF_UNKNOWN, result.proba_unknown)):
        if proba is None:
            continue
        oof = pd.DataFrame({"image_id": result.ids, "label": [classes[i] for i in result.labels]})
        for k, c in enumerate(classes):
            oof[f"p_{c}"] = np.round(proba[:, k], 6)
        write_csv(out / name, oof)
    write_json(out / "fold.json", json_safe(result.info))


def train_folds(
    prm: params_mod.Params,
    k: int,
    tfrecords: str,
    cache: str,
    table: pd.DataFrame,
    pretrained: str,
    out: Path,
) -> None:
    """Train folds 0..k-1 in turn into out/fold_<f>/, a progress line per fold. Each fold starts
    from a cleared Keras session and `train_fold`'s own seeding, as in a process of its own: the
    same bytes as one stage per fold, and no fold's graph or weights held during the next."""
    t0 = time.time()
    for f in range(k):
        keras.backend.clear_session()
        start = time.time()
        result = train_fold(prm, f, tfrecords, cache, table, pretrained)
        write(result, list(result.info["classes"]), out / f"fold_{f}")
        took, left = time.time() - start, (time.time() - t0) / (f + 1) * (k - f - 1)
        log.info(
            "fold %d (%d/%d): %d held-out images predicted in %.0f s (epoch %d, temperature "
            "%.3f)%s",
            f,
            f + 1,
            k,
            len(result.ids),
            took,
            result.info["best_epoch"],
            result.info["temperature"],
            f"; about {left / 60:.0f} min left" if left else "",
        )
    keras.backend.clear_session()
