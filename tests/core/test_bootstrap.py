"""Bootstrap percentile CIs: contain the estimate, narrow with n, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from dermai.core import metrics
from dermai.core.bootstrap import bootstrap_ci, bootstrap_cis


def data(n: int, seed: int = 0, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += 0.4
    return y, p / p.sum(1, keepdims=True)


def acc(y, p):
    return metrics.accuracy(y, p.argmax(1))


def test_ci_contains_point_and_narrows_with_n():
    widths = []
    for n in (100, 2000):
        y, p = data(n)
        ci = bootstrap_ci(acc, y, p, n_resamples=500, seed=1)
        assert ci.low <= ci.point <= ci.high
        assert ci.point == acc(y, p)
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 2  # ~sqrt(20) narrower


def test_seeded_and_deterministic():
    y, p = data(200)
    a = bootstrap_ci(acc, y, p, n_resamples=200, seed=7)
    b = bootstrap_ci(acc, y, p, n_resamples=200, seed=7)
    c = bootstrap_ci(acc, y, p, n_resamples=200, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.n_resamples == 200 and a.level == 0.95


def test_several_metrics_share_resamples_and_undefined_resamples_are_dropped():
    # One sample of class 3: many resamples miss it, so its AUC is undefined there; macro AUC
    # stays defined (it averages the classes present).
    y, p = data(60, seed=2)
    y[y == 3] = 0
    y[0] = 3
    cis = bootstrap_cis(
        {
            "accuracy": acc,
            "balanced_accuracy": lambda y, p: metrics.balanced_accuracy(y, p.argmax(1), 4),
            "macro_auc": metrics.macro_auc,
            "auc_3": lambda y, p: metrics.per_class_auc(y, p)[3],
        },
        y,
        p,
        n_resamples=300,
        seed=0,
    )
    for ci in cis.values():
        assert np.isfinite(ci.low) and ci.low <= ci.high
    assert cis["auc_3"].n_resamples < 300  # resamples without class 3 were left out
    assert cis["macro_auc"].n_resamples == 300
    assert cis["macro_auc"].low <= cis["macro_auc"].point <= cis["macro_auc"].high


def test_no_resamples_gives_nan_interval():
    y, p = data(10)
    ci = bootstrap_ci(acc, y, p, n_resamples=0)
    assert np.isnan(ci.low) and ci.point == acc(y, p)


def brute_force_interval(y, p, n_resamples: int, seed: int, level: float) -> tuple[float, float]:
    """The percentile interval by hand: the same seeded resamples, metric per resample, the
    (1 - level) / 2 tails cut from each side."""
    from dermai.core.bootstrap import resample_indices

    values = [acc(y[i], p[i]) for i in resample_indices(len(y), n_resamples, seed)]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


@pytest.mark.parametrize("level", [0.95, 0.9, 0.8])
def test_interval_is_the_stated_level_computed_by_hand(level):
    y, p = data(150, seed=3)
    ci = bootstrap_ci(acc, y, p, n_resamples=400, seed=5, level=level)
    assert ci.level == level
    assert (ci.low, ci.high) == pytest.approx(brute_force_interval(y, p, 400, 5, level))


def test_default_interval_is_95_percent_and_wider_than_90():
    y, p = data(150, seed=3)
    ci = bootstrap_ci(acc, y, p, n_resamples=400, seed=5)
    assert ci.level == 0.95
    assert (ci.low, ci.high) == pytest.approx(brute_force_interval(y, p, 400, 5, 0.95))
    narrow = brute_force_interval(y, p, 400, 5, 0.90)
    assert ci.high - ci.low > narrow[1] - narrow[0]
