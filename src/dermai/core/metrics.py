"""Classification metrics shared by train, evaluate and evaluate-external. Pure numpy/sklearn.

Balanced accuracy is the mean per-class recall over the classes present in `y_true` (the
ISIC 2018 metric); macro AUC is one-vs-rest over the classes present with both outcomes.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = y_true == c
        if m.any():
            out[c] = np.mean(y_pred[m] == c)
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    r = per_class_recall(y_true, y_pred, n_classes)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def per_class_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true)
    n_classes = proba.shape[1]
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        pos = y_true == c
        if pos.any() and (~pos).any():
            out[c] = roc_auc_score(pos, proba[:, c])
    return out


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    a = per_class_auc(y_true, proba)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def summary(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The three headline numbers, from probabilities and an argmax decision."""
    y_pred = np.argmax(proba, axis=1)
    n = proba.shape[1]
    return {
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, n),
        "macro_auc": macro_auc(y_true, proba),
    }
