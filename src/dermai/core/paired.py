"""Paired comparison of two models on the same images: is B really better than A? Pure numpy/scipy.

Two runs' confidence intervals overlap even when one model is consistently better, because most
of each interval is test-set sampling noise that both runs share. Pairing removes it: resample
image indices once and score A and B on the SAME resample, so the interval is for the
difference itself. McNemar's test asks the top-1 question directly from the images where exactly
one model is right.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, chi2

from dermai.core import metrics as M
from dermai.core.bootstrap import resample_indices

# Below this many discordant images McNemar uses the exact binomial test (the chi-square
# approximation is poor there); statsmodels uses the same cut-off.
EXACT_BELOW = 25

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class DiffCI:
    """Metric(B) - metric(A) on all images, and its paired-bootstrap percentile interval."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    level: float
    n_resamples: int

    @property
    def exceeds_noise(self) -> bool:
        """True when the whole interval is on one side of 0."""
        return bool(self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class McNemar:
    """b = images only A gets right, c = images only B gets right."""

    a_only: int
    b_only: int
    statistic: float
    p_value: float
    method: str


def headline_metrics(n_classes: int) -> dict[str, Metric]:
    """The evaluate stage's three headline numbers as `fn(y, proba)`."""
    return {
        "accuracy": lambda y, p: M.accuracy(y, p.argmax(axis=1)),
        "balanced_accuracy": lambda y, p: M.balanced_accuracy(y, p.argmax(axis=1), n_classes),
        "macro_auc": lambda y, p: M.macro_auc(y, p),
    }


def paired_bootstrap(metrics: Mapping[str, Metric], y: np.ndarray, proba_a: np.ndarray,
                     proba_b: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, DiffCI]:
    """Percentile CIs of metric(B) - metric(A), both scored on the same seeded resamples of
    image indices. Resamples where a difference is undefined (NaN) are dropped for that metric."""
    y = np.asarray(y)
    proba_a, proba_b = np.asarray(proba_a, dtype=np.float64), np.asarray(proba_b, np.float64)
    n = len(y)
    if proba_a.shape != proba_b.shape or len(proba_a) != n:
        raise ValueError(f"shapes differ: y {y.shape}, A {proba_a.shape}, B {proba_b.shape}")
    idx = resample_indices(n, n_resamples, seed) if n and n_resamples > 0 else None
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for name, fn in metrics.items():
        a, b = float(fn(y, proba_a)), float(fn(y, proba_b))
        if idx is None:
            out[name] = DiffCI(a, b, b - a, float("nan"), float("nan"), level, 0)
            continue
        d = np.array([fn(y[r], proba_b[r]) - fn(y[r], proba_a[r]) for r in idx], dtype=float)
        d = d[np.isfinite(d)]
        if len(d):
            lo, hi = np.percentile(d, [tail, 100.0 - tail])
            out[name] = DiffCI(a, b, b - a, float(lo), float(hi), level, len(d))
        else:
            out[name] = DiffCI(a, b, b - a, float("nan"), float("nan"), level, 0)
    return out


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's test on paired top-1 correctness: exact two-sided binomial when fewer than
    EXACT_BELOW images are discordant, else chi-square with continuity correction."""
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise ValueError(f"shapes differ: {ca.shape} vs {cb.shape}")
    b, c = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    n = b + c
    if n == 0:
        return McNemar(b, c, 0.0, 1.0, "exact")
    if n < EXACT_BELOW:
        return McNemar(b, c, float(min(b, c)), float(binomtest(min(b, c), n, 0.5).pvalue),
                       "exact")
    stat = max(abs(b - c) - 1.0, 0.0) ** 2 / n
    return McNemar(b, c, float(stat), float(chi2.sf(stat, 1)), "chi2")
