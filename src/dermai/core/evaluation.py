"""The one evaluation report shared by `evaluate` and `evaluate-external`. Pure numpy.

From true labels and logits (plus a temperature and optional subgroup columns) it computes
every number the stages publish: headline metrics with bootstrap CIs, per-class metrics, the
confusion matrix, calibration before/after temperature scaling, and subgroup metrics. The
result is a JSON-ready dict (NaN -> None) so `dvc metrics show` never sees a bare NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermai.core import calibration, metrics
from dermai.core.bootstrap import bootstrap_cis

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")
WITH_CI = ("accuracy", "balanced_accuracy", "macro_auc")


def json_safe(obj: Any) -> Any:
    """numpy scalars/arrays -> Python, NaN/inf -> None, recursively; floats rounded to 6
    decimals so reports do not churn on the last bits."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return round(v, 6) if math.isfinite(v) else None
    return obj


def headline(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    n = proba.shape[1]
    pred = proba.argmax(axis=1)
    return {
        "accuracy": metrics.accuracy(y, pred),
        "balanced_accuracy": metrics.balanced_accuracy(y, pred, n),
        "macro_f1": metrics.macro_f1(y, pred, n),
        "macro_auc": metrics.macro_auc(y, proba),
    }


def _ci_fns(n_classes: int) -> dict[str, Any]:
    return {
        "accuracy": lambda y, p: metrics.accuracy(y, p.argmax(axis=1)),
        "balanced_accuracy": lambda y, p: metrics.balanced_accuracy(y, p.argmax(axis=1), n_classes),
        "macro_auc": lambda y, p: metrics.macro_auc(y, p),
    }


def per_class(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    rep = metrics.per_class_report(y, proba.argmax(axis=1), len(classes))
    auc = metrics.per_class_auc(y, proba)
    return {
        c: {
            "precision": rep["precision"][i],
            "recall": rep["recall"][i],
            "f1": rep["f1"][i],
            "support": int(rep["support"][i]),
            "auc": auc[i],
        }
        for i, c in enumerate(classes)
    }


def calibration_report(
    y: np.ndarray, logits: np.ndarray, temperature: float, bins: int
) -> dict[str, Any]:
    before = calibration.probabilities(logits, 1.0)
    after = calibration.probabilities(logits, temperature)
    return {
        "temperature": temperature,
        "bins": bins,
        "ece_before": calibration.ece(before, y, bins),
        "ece_after": calibration.ece(after, y, bins),
        "nll_before": calibration.nll(logits, y, 1.0),
        "nll_after": calibration.nll(logits, y, temperature),
        "reliability_before": calibration.reliability(before, y, bins),
        "reliability_after": calibration.reliability(after, y, bins),
    }


def subgroup_report(
    y: np.ndarray, proba: np.ndarray, groups: Mapping[str, Sequence[str]], min_size: int = 1
) -> dict[str, dict[str, Any]]:
    """Headline metrics (no CIs: subgroups are small, read them as indications) per value of
    each grouping column, e.g. {"age_group": {"0-29": {...}}, "source": {...}}."""
    out: dict[str, dict[str, Any]] = {}
    for col, raw in groups.items():
        values = np.asarray([str(v) for v in raw])
        out[col] = {}
        for v in sorted(set(values.tolist())):
            m = values == v
            if m.sum() < min_size:
                continue
            out[col][v] = {"n": int(m.sum()), **headline(y[m], proba[m])}
    return out


def report(
    y: np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str],
    *,
    temperature: float,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    bins: int = 15,
) -> dict[str, Any]:
    """Everything for one labelled set, from the calibrated probabilities (what users see).
    Temperature leaves the argmax, so accuracy and F1, unchanged; one-vs-rest AUCs can move a
    little because softmax(z / T) re-ranks a class's scores across images."""
    y = np.asarray(y, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    proba = calibration.probabilities(logits, temperature)
    cis = bootstrap_cis(
        {k: f for k, f in _ci_fns(len(classes)).items() if k in WITH_CI},
        y,
        proba,
        n_resamples=n_bootstrap,
        seed=seed,
    )
    pred = proba.argmax(axis=1)
    out = {
        "n": len(y),
        **headline(y, proba),
        "ci": {
            k: {"low": ci.low, "high": ci.high, "level": ci.level, "n_resamples": ci.n_resamples}
            for k, ci in cis.items()
        },
        "per_class": per_class(y, proba, classes),
        "confusion_matrix": {
            "labels": list(classes),
            "matrix": metrics.confusion_matrix(y, pred, len(classes)),
        },
        "calibration": calibration_report(y, logits, temperature, bins),
        "subgroups": subgroup_report(y, proba, groups or {}),
    }
    return json_safe(out)


def most_confident_mistakes(
    y: np.ndarray, proba: np.ndarray, n_classes: int, per_class_k: int
) -> dict[int, list[int]]:
    """For each true class, indices of its misclassified samples, most confident first
    (ties broken by index so the selection is deterministic)."""
    y = np.asarray(y)
    pred = proba.argmax(axis=1)
    conf = proba.max(axis=1)
    out: dict[int, list[int]] = {}
    for c in range(n_classes):
        idx = np.flatnonzero((y == c) & (pred != c))
        order = np.lexsort((idx, -conf[idx]))
        out[c] = [int(i) for i in idx[order][:per_class_k]]
    return out
