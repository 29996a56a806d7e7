"""Class-imbalance weights. Pure numpy.

Full inverse-frequency weights made a measured Lite0 run trade most of the majority-class (NV)
recall away; `power` < 1 smooths them: w_c = (N / (K n_c)) ** power, normalised so the average
weight per training sample is 1 (the loss scale, and so the learning rate, stays comparable).
"""

from __future__ import annotations

import numpy as np


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)


def class_weights(labels: np.ndarray, n_classes: int, power: float = 0.5) -> np.ndarray:
    """Smoothed inverse-frequency weights; absent classes get weight 0."""
    counts = class_counts(labels, n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    mean = (w * counts).sum() / counts.sum()
    return w / mean


def sampling_weights(labels: np.ndarray, n_classes: int, power: float = 1.0) -> np.ndarray:
    """Probabilities for drawing each class when oversampling: power 1 = balanced,
    0 = the natural frequencies."""
    counts = class_counts(labels, n_classes).astype(np.float64)
    p = np.where(counts > 0, counts ** (1.0 - power), 0.0)
    return p / p.sum()
