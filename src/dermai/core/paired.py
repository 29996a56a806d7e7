"""Paired comparison of two models on the same images: is B really better than A? Pure numpy/scipy.

Two runs' confidence intervals overlap even when one model is consistently better, because most
of each interval is test-set sampling noise that both runs share. Pairing removes it: resample
image indices once and score A and B on the SAME resample, so the interval is for the
difference itself. McNemar's test asks the top-1 question directly from the images where exactly
one model is right.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, chi2

from dermai.core import metrics
from dermai.core.bootstrap import group_resamples, resample_indices

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
        "accuracy": lambda y, p: metrics.accuracy(y, p.argmax(axis=1)),
        "balanced_accuracy": lambda y, p: metrics.balanced_accuracy(y, p.argmax(axis=1), n_classes),
        "macro_auc": lambda y, p: metrics.macro_auc(y, p),
    }


def class_recall(k: int) -> Metric:
    """Recall of class index `k` as `fn(y, proba)` (top-1 = k among the images labelled k); NaN
    when there are none, so `paired_bootstrap` drops that resample."""

    def recall(y: np.ndarray, proba: np.ndarray) -> float:
        mine = y == k
        return float(np.mean(proba[mine].argmax(axis=1) == k)) if mine.any() else float("nan")

    return recall


def paired_bootstrap(
    metrics: Mapping[str, Metric],
    y: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[str] | None = None,
) -> dict[str, DiffCI]:
    """Percentile CIs of metric(B) - metric(A), both scored on the same seeded resamples of
    image indices (of whole `groups` when given: patients of out-of-fold predictions). Resamples
    where a difference is undefined (NaN) are dropped for that metric."""
    y = np.asarray(y)
    proba_a, proba_b = np.asarray(proba_a, dtype=np.float64), np.asarray(proba_b, np.float64)
    n = len(y)
    if proba_a.shape != proba_b.shape or len(proba_a) != n:
        raise ValueError(f"shapes differ: y {y.shape}, A {proba_a.shape}, B {proba_b.shape}")
    idx: np.ndarray | list[np.ndarray] | None = None
    if n and n_resamples > 0:
        idx = (
            resample_indices(n, n_resamples, seed)
            if groups is None
            else group_resamples(groups, n_resamples, seed)
        )
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
        return McNemar(b, c, float(min(b, c)), float(binomtest(min(b, c), n, 0.5).pvalue), "exact")
    stat = max(abs(b - c) - 1.0, 0.0) ** 2 / n
    return McNemar(b, c, float(stat), float(chi2.sf(stat, 1)), "chi2")


# --------------------------------------------------------------------------- fast path
# The generic loop above re-ranks every resample (a 1,000-image, 7-class test set: ~10 s per
# 1,000 resamples on an idle core). The same numbers follow from each resample's multiplicity
# weights w (how often each image was drawn) with one sort per class, vectorised over resamples.


def _weighted_auc(pos: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC of `score` for `pos` per resample, from weights `w` (n images x R resamples);
    NaN where a resample has no positive or no negative weight. Ties count one half, as in the
    Mann-Whitney U."""
    order = np.argsort(score, kind="stable")
    s, p = score[order], pos[order]
    ws = w[order]
    wneg, wpos = ws * ~p[:, None], ws * p[:, None]
    if len(s) > 1 and np.any(s[1:] == s[:-1]):  # tie groups
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        neg_tie = np.add.reduceat(wneg, starts, axis=0)
        pos_tie = np.add.reduceat(wpos, starts, axis=0)
    else:
        neg_tie, pos_tie = wneg, wpos
    neg_below = np.cumsum(neg_tie, axis=0) - neg_tie  # negatives strictly below each score
    u = np.sum(pos_tie * (neg_below + 0.5 * neg_tie), axis=0)
    n_pos, n_neg = wpos.sum(axis=0), wneg.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _headline_weighted(
    y: np.ndarray, proba: np.ndarray, w: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro AUC of `proba` on each weighted resample (`w`:
    n images x R resamples)."""
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    wc = w * correct[:, None]
    recalls, aucs = [], []
    for c in range(n_classes):
        m = y == c
        support = w[m].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(support > 0, wc[m].sum(axis=0) / support, np.nan))
        aucs.append(_weighted_auc(m, proba[:, c], w))

    def nanmean(rows: list[np.ndarray]) -> np.ndarray:
        a = np.stack(rows, axis=1)
        ok = np.isfinite(a)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok.any(axis=1), np.where(ok, a, 0).sum(axis=1) / ok.sum(axis=1), np.nan)

    return {
        "accuracy": wc.sum(axis=0) / w.sum(axis=0),
        "balanced_accuracy": nanmean(recalls),
        "macro_auc": nanmean(aucs),
    }


def paired_bootstrap_headline(
    y: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 250,
    groups: Sequence[str] | None = None,
) -> dict[str, DiffCI]:
    """`paired_bootstrap(headline_metrics(k), ...)`, same resamples and result, vectorised."""
    y = np.asarray(y)
    proba_a, proba_b = np.asarray(proba_a, dtype=np.float64), np.asarray(proba_b, np.float64)
    n, k = len(y), proba_a.shape[1]
    if proba_a.shape != proba_b.shape or len(proba_a) != n:
        raise ValueError(f"shapes differ: y {y.shape}, A {proba_a.shape}, B {proba_b.shape}")
    if not n or n_resamples <= 0:
        return paired_bootstrap(
            headline_metrics(k),
            y,
            proba_a,
            proba_b,
            n_resamples=n_resamples,
            seed=seed,
            level=level,
            groups=groups,
        )
    idx = resample_indices(n, n_resamples, seed) if groups is None else None
    grouped = None if groups is None else group_resamples(groups, n_resamples, seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in headline_metrics(k)}
    for start in range(0, n_resamples, chunk):
        if grouped is not None:  # resamples of whole groups: each its own length
            rows = grouped[start : start + chunk]
            w = np.stack([np.bincount(r, minlength=n) for r in rows], axis=1).astype(np.float64)
        else:
            assert idx is not None
            part = idx[start : start + chunk]
            flat = (np.arange(len(part))[:, None] * n + part).ravel()
            counts = np.bincount(flat, minlength=len(part) * n)
            w = counts.reshape(len(part), n).T.astype(np.float64)
        ma, mb = _headline_weighted(y, proba_a, w, k), _headline_weighted(y, proba_b, w, k)
        for m in diffs:
            diffs[m].append(mb[m] - ma[m])
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for name, fn in headline_metrics(k).items():
        a, b = float(fn(y, proba_a)), float(fn(y, proba_b))
        d = np.concatenate(diffs[name])
        d = d[np.isfinite(d)]
        if len(d):
            lo, hi = np.percentile(d, [tail, 100.0 - tail])
            out[name] = DiffCI(a, b, b - a, float(lo), float(hi), level, len(d))
        else:
            out[name] = DiffCI(a, b, b - a, float("nan"), float("nan"), level, 0)
    return out
