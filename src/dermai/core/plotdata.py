"""Long-format rows for the DVC plots: one list of flat dicts per chart.

Why long format: the chart templates in .dvc/plots/ colour by a field (`class`, `split`,
`curve`), so dvc.yaml names one file per chart and never a class; any `base.classes` works.
Human-readable labels (legend text with AUC, metric names) are made here, once, so the
templates stay generic. Numbers are rounded so the files are small and stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DIGITS = 5
PHASES = {1: "head", 2: "fine-tune"}
METRIC_NAMES = {
    "loss": "loss",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_auc": "macro AUC",
}
SPLIT_NAMES = {"train": "train", "val": "validation"}


def _r(v: float) -> float:
    return round(float(v), DIGITS)


def roc_rows(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One-vs-rest ROC per class that has both outcomes; legend text carries AUC and n."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y)
    rows: list[dict[str, Any]] = []
    for c, cls in enumerate(classes):
        pos = (y == c).astype(np.int64)
        if not 0 < pos.sum() < len(pos):
            continue
        fpr, tpr, _ = roc_curve(pos, proba[:, c])
        auc = roc_auc_score(pos, proba[:, c])
        legend = f"{cls} (AUC {auc:.3f}, n={int(pos.sum())})"
        rows += [
            {
                "class": cls,
                "class_index": c,
                "legend": legend,
                "auc": _r(auc),
                "fpr": _r(f),
                "tpr": _r(t),
            }
            for f, t in zip(fpr, tpr, strict=True)
        ]
    return rows


def pr_rows(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One-vs-rest precision-recall per class; legend text carries average precision and the
    prevalence (the precision of a model that guesses)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(y)
    rows: list[dict[str, Any]] = []
    for c, cls in enumerate(classes):
        pos = (y == c).astype(np.int64)
        if not 0 < pos.sum() < len(pos):
            continue
        precision, recall, _ = precision_recall_curve(pos, proba[:, c])
        ap = average_precision_score(pos, proba[:, c])
        prevalence = pos.mean()
        legend = f"{cls} (AP {ap:.3f}, chance {prevalence:.3f})"
        rows += [
            {
                "class": cls,
                "class_index": c,
                "legend": legend,
                "ap": _r(ap),
                "prevalence": _r(prevalence),
                "recall": _r(r),
                "precision": _r(p),
            }
            for r, p in zip(recall, precision, strict=True)
        ]
    return rows


def reliability_rows(calibration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Non-empty bins of the top-label reliability diagram, before and after temperature
    scaling (from `core.evaluation.calibration_report`)."""
    rows: list[dict[str, Any]] = []
    curves = (
        (
            0,
            f"before calibration (ECE {calibration['ece_before']:.3f})",
            calibration["reliability_before"],
        ),
        (
            1,
            f"after temperature T={calibration['temperature']:.2f} "
            f"(ECE {calibration['ece_after']:.3f})",
            calibration["reliability_after"],
        ),
    )
    for order, name, rel in curves:
        for conf, acc, n in zip(rel["confidence"], rel["accuracy"], rel["count"], strict=True):
            if n and conf is not None and np.isfinite(conf):
                rows.append(
                    {
                        "curve": name,
                        "curve_index": order,
                        "confidence": _r(conf),
                        "accuracy": _r(acc),
                        "count": int(n),
                    }
                )
    return rows


def confusion_rows(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Every (actual, predicted) cell, rows = actual class (scikit-learn's convention), with
    the raw count and the share of its actual class (row-normalised; 0 for an empty row)."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix shape {m.shape} does not match {len(classes)} classes")
    totals = m.sum(axis=1)
    return [
        {
            "actual": a,
            "predicted": p,
            "actual_index": i,
            "predicted_index": j,
            "count": int(m[i, j]),
            "actual_total": int(totals[i]),
            "row_share": _r(m[i, j] / totals[i]) if totals[i] else 0.0,
        }
        for i, a in enumerate(classes)
        for j, p in enumerate(classes)
    ]


def training_rows(
    history: Sequence[tuple[int, int, Mapping[str, float]]], kept_step: int
) -> list[dict[str, Any]]:
    """Curves of every epoch: (step, phase, {"train/loss": v, "val/accuracy": v, ...}) ->
    rows with step, metric, split, phase and whether the step is the kept one. Non-finite
    values are left out (a gap, not a zero)."""
    rows: list[dict[str, Any]] = []
    for step, phase, values in history:
        for key, v in values.items():
            split, metric = key.split("/", 1)
            if v is None or not np.isfinite(v):
                continue
            rows.append(
                {
                    "step": int(step),
                    "metric": METRIC_NAMES.get(metric, metric),
                    "split": SPLIT_NAMES.get(split, split),
                    "phase": PHASES.get(phase, str(phase)),
                    "value": _r(v),
                    "kept": int(step) == int(kept_step),
                }
            )
    return rows
