"""Classification metrics shared by train, evaluate and evaluate-external. Pure numpy/sklearn.

Balanced accuracy is the mean per-class recall over the classes present in `y_true` (the
ISIC 2018 metric); macro AUC is one-vs-rest over the classes present with both outcomes;
macro F1 averages over the classes present in `y_true` too, so a class absent from a small test
set is left out rather than counted as zero.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import f1_score, precision_recall_fscore_support


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


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): equal to sklearn's, cheap enough
    to run inside a 1000-resample bootstrap."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_class_auc(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true)
    n_classes = proba.shape[1]
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        out[c] = binary_auc(y_true == c, proba[:, c])
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


def present_labels(y_true: np.ndarray) -> list[int]:
    return sorted(int(c) for c in np.unique(np.asarray(y_true)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in `y_true` (0 where never predicted)."""
    labels = [c for c in present_labels(y_true) if c < n_classes]
    if not labels:
        return float("nan")
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0.0))


def per_class_report(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class index. Precision is NaN for a class never
    predicted, recall and F1 NaN for a class with no true samples (undefined, not zero)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(n_classes))
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan
    )
    support = np.asarray(s, dtype=np.int64)
    predicted = np.bincount(y_pred.astype(np.int64), minlength=n_classes)[:n_classes]
    f = np.where(support > 0, np.nan_to_num(f, nan=0.0), np.nan)
    r = np.where(support > 0, r, np.nan)
    p = np.where(predicted > 0, p, np.nan)
    return {
        "precision": p.astype(np.float64),
        "recall": r.astype(np.float64),
        "f1": f.astype(np.float64),
        "support": support,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """n_classes x n_classes counts, rows = true class, columns = predicted class."""
    return _sk_confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
