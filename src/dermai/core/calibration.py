"""Temperature scaling and calibration measures. Pure numpy/scipy.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted on validation
data by minimising the negative log-likelihood; it leaves the argmax, so accuracy, unchanged and
only makes the confidence honest. ECE uses the top-label confidence in equal-width bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax, softmax

T_BOUNDS = (0.05, 20.0)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under softmax(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    lp = log_softmax(logits / temperature, axis=1)
    return float(-np.mean(lp[np.arange(len(y)), y]))


def fit_temperature(
    logits: np.ndarray, y_true: np.ndarray, bounds: tuple[float, float] = T_BOUNDS
) -> float:
    """The T in `bounds` minimising validation NLL (bounded scalar search over log T)."""
    if len(y_true) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # ~1 s to import: not for `dermai predict --help`

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda log_t: nll(logits, y_true, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6, "maxiter": 500},
    )
    t = float(np.exp(res.x))
    # Never return something worse than leaving the model alone.
    return t if nll(logits, y_true, t) <= nll(logits, y_true, 1.0) else 1.0


def _bins(proba: np.ndarray, y_true: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    # Equal-width bins (lo, hi]; confidence 0 joins the first bin.
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    return count, conf_sum, acc_sum


def reliability(proba: np.ndarray, y_true: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Per-bin mean confidence, accuracy and count (NaN for an empty bin): the diagram's data."""
    count, conf_sum, acc_sum = _bins(proba, y_true, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "confidence": conf,
        "accuracy": acc,
        "count": count,
    }


def ece(proba: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: count-weighted mean |accuracy - confidence| over bins."""
    count, conf_sum, acc_sum = _bins(proba, y_true, bins)
    n = count.sum()
    return float(np.abs(acc_sum - conf_sum).sum() / n) if n else float("nan")


def mce(proba: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Maximum calibration error over non-empty bins."""
    count, conf_sum, acc_sum = _bins(proba, y_true, bins)
    m = count > 0
    return float(np.max(np.abs(acc_sum[m] - conf_sum[m]) / count[m])) if m.any() else float("nan")
