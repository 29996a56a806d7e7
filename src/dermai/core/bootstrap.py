"""Bootstrap percentile confidence intervals. Pure numpy.

Test sets here are small (a few hundred to a thousand images), so a point estimate without an
interval invites reading noise as progress. Resampling is seeded: the same inputs give the same
interval, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CI:
    point: float
    low: float
    high: float
    level: float
    n_resamples: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "point": self.point,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n_resamples": self.n_resamples,
        }


def resample_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """n_resamples x n_items indices drawn with replacement from a seeded Generator."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_resamples, n_items))


def group_resamples(groups: Sequence[str], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Item indices of n_resamples cluster-bootstrap resamples: whole groups (patients,
    lesions) drawn with replacement, each bringing all its items. Photos of one patient are not
    independent, so resampling items would make the interval too narrow."""
    _, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    draws = resample_indices(len(members), n_resamples, seed)
    return [np.concatenate([members[g] for g in row]) for row in draws]


def bootstrap_cis(
    metrics: Mapping[str, Callable[..., float]],
    *arrays: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[str] | None = None,
) -> dict[str, CI]:
    """Percentile CIs for several metrics `fn(*arrays) -> float`, on the same resamples
    (of items, or of whole `groups` when given: `group_resamples`).

    Resamples where a metric is undefined (NaN, e.g. an AUC with a class missing) are dropped
    for that metric; with no defined resample the interval is NaN.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap arrays must have the same length")
    points = {k: float(fn(*arrays)) for k, fn in metrics.items()}
    if n == 0 or n_resamples <= 0:
        return {k: CI(p, float("nan"), float("nan"), level, 0) for k, p in points.items()}
    idx: np.ndarray | list[np.ndarray] = (
        resample_indices(n, n_resamples, seed)
        if groups is None
        else group_resamples(groups, n_resamples, seed)
    )
    values = {k: np.empty(n_resamples) for k in metrics}
    for r in range(n_resamples):
        sample = tuple(a[idx[r]] for a in arrays)
        for k, fn in metrics.items():
            values[k][r] = fn(*sample)
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for k, v in values.items():
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = np.percentile(v, [tail, 100.0 - tail])
            out[k] = CI(points[k], float(lo), float(hi), level, len(v))
        else:
            out[k] = CI(points[k], float("nan"), float("nan"), level, 0)
    return out


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CI:
    """Percentile CI for one metric `fn(*arrays) -> float`."""
    return bootstrap_cis({"m": metric}, *arrays, n_resamples=n_resamples, seed=seed, level=level)[
        "m"
    ]
