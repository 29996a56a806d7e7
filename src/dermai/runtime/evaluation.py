"""A bundle over the TFRecords' evaluated splits: its logits (through `Bundle.analyse`, the path
every runtime takes), the temperature fitted on val, and the calibration document.

`dermai evaluate` reports val and test (and a held-out site's `external` split, exactly like
test); the temperature and the OOD guard are fitted on val only. Not a diagnostic tool.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypedDict

import numpy as np

from dermai.core import calibration, metadata
from dermai.core.schema import EXTERNAL, METADATA_UNKNOWN
from dermai.errors import DermaiError
from dermai.models import data as tfdata
from dermai.models.metainputs import read_columns
from dermai.runtime.bundle import Bundle

log = logging.getLogger(__name__)

EVALUATED_SPLITS = ("val", "test")  # + EXTERNAL when split.external_source held a site out
BATCH = 64
PROGRESS_EVERY_S = 10.0  # a progress line at most this often while predicting a split


class SplitPredictions(TypedDict):
    """One split's predictions, in file order."""

    logits: np.ndarray  # float64 (n, classes): the bundle's scored logits (its TTA's, when on)
    y: np.ndarray  # int64 (n,)
    groups: dict[str, list[str]]  # age_group, source
    ids: list[str]
    images: np.ndarray | None  # uint8 (n, h, w, 3) when kept


def metadata_by_id(bundle: Bundle, folder: str, split: str) -> dict[str, np.ndarray]:
    """{image id: its encoded metadata row} of a split, for a model that takes metadata."""
    assert bundle.metadata is not None
    ids, columns, _ = read_columns(folder, split, bundle.metadata.fields)
    return dict(zip(ids, bundle.metadata.encode_columns(columns), strict=True))


def predict_split(
    bundle: Bundle, folder: str, split: str, keep_images: bool, metadata_known: bool = True
) -> SplitPredictions:
    """Logits, labels, subgroup columns (and uint8 images if asked) for one TFRecord split. A
    model with metadata reads each image's own (`metadata_known`) or every field unknown."""
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "y", "images")}
    rows = (
        metadata_by_id(bundle, folder, split)
        if bundle.metadata is not None and metadata_known
        else None
    )
    out: dict[str, list[str]] = {k: [] for k in ("age_group", "source", "id")}
    total = tfdata.read_meta(folder)["splits"][split].get("images")
    started = last_log = time.monotonic()
    done = 0
    for x, y, meta in tfdata.dataset(folder, split, BATCH, with_meta=True):
        m = None
        if rows is not None:
            m = np.stack([rows[v.decode("utf-8")] for v in meta["image_id"].numpy().tolist()])
        arrays["logits"].append(bundle.analyse(x.numpy(), m).scored.astype(np.float64))
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


def predict_splits(bundle: Bundle, folder: str) -> dict[str, SplitPredictions]:
    """val and test (+ external when the TFRecords hold a held-out site); the images of the
    reported splits are kept for the error gallery. A model with metadata reads each image's
    own, and its test (and external) splits are predicted again with every field unknown, as
    `<split>_metadata_unknown` (a user who answers nothing)."""
    meta = tfdata.read_meta(folder)
    if meta["classes"] != bundle.classes:
        raise DermaiError("TFRecords and model were made for different classes")
    splits = (*EVALUATED_SPLITS, EXTERNAL) if EXTERNAL in meta["splits"] else EVALUATED_SPLITS
    out = {s: predict_split(bundle, folder, s, keep_images=s != "val") for s in splits}
    if bundle.metadata is not None:
        for s in splits[1:]:
            out[f"{s}_{METADATA_UNKNOWN}"] = predict_split(
                bundle, folder, s, keep_images=False, metadata_known=False
            )
    return out


def fit_temperature(val: SplitPredictions) -> tuple[float, tuple[float, float]]:
    """(temperature, (val NLL before, after)): fitted on the val logits, with a warning when it
    sits at its search bound."""
    t = calibration.fit_temperature(val["logits"], val["y"])
    nll = (
        calibration.nll(val["logits"], val["y"], 1.0),
        calibration.nll(val["logits"], val["y"], t),
    )
    log.info("temperature %.4f fitted on val: NLL %.4f -> %.4f", t, *nll)
    if np.isclose(t, calibration.T_BOUNDS, rtol=1e-3).any():
        log.warning(
            "temperature %.4f is at its search bound %s: the validation set is "
            "(nearly) perfectly separated or tiny, so NLL keeps falling; treat the "
            "calibrated probabilities with suspicion",
            t,
            calibration.T_BOUNDS,
        )
    return t, nll


def calibration_doc(
    t: float,
    val_nll: tuple[float, float],
    test_calibration: dict[str, Any],
    bins: int,
    bundle: Bundle,
) -> dict[str, Any]:
    """What `calibration.json` says: the temperature, where it was fitted and what it changed;
    the TTA mode it was fitted with, when on (the bundle then applies it, in every runtime)."""
    cal: dict[str, Any] = {
        "temperature": round(t, 6),
        "fitted_on": "val",
        "bins": bins,
        "val_nll_before": round(val_nll[0], 6),
        "val_nll_after": round(val_nll[1], 6),
        "test_ece_before": test_calibration["ece_before"],
        "test_ece_after": test_calibration["ece_after"],
        "classes": bundle.classes,
        "model": bundle.path.name,
    }
    if bundle.tta != "none":
        cal["tta"] = bundle.tta
    return cal


def representative_metadata(folder: str, ids: list[str], enc: metadata.Encoder) -> np.ndarray:
    """The int8 calibration's metadata rows: each representative TRAIN image's own (`ids`), every
    second one all unknown, so both paths set the metadata input's range."""
    got, cols, _ = read_columns(folder, "train", enc.fields)
    pos = {i: k for k, i in enumerate(got)}
    m = enc.encode_columns({f: [cols[f][pos[i]] for i in ids] for f in enc.fields})
    m[1::2] = enc.unknown()
    return m


def test_metadata(folder: str, y: np.ndarray, enc: metadata.Encoder) -> np.ndarray:
    """The test split's encoded metadata in `tfdata.split_arrays`' order (checked on labels)."""
    _ids, cols, labels = read_columns(folder, "test", enc.fields)
    if not np.array_equal(labels, y):
        raise DermaiError("the test split's metadata rows are not in the images' order")
    return enc.encode_columns(cols)
