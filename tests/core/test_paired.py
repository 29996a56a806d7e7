"""Paired bootstrap of differences and McNemar's test, against brute force and hand cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chi2

from dermai.core.bootstrap import resample_indices
from dermai.core.paired import (
    EXACT_BELOW,
    class_recall,
    headline_metrics,
    mcnemar,
    paired_bootstrap,
    paired_bootstrap_headline,
)


def data(n: int, seed: int = 0, k: int = 4, boost: float = 0.4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += boost
    return y, p / p.sum(1, keepdims=True)


def test_identical_predictions_give_exactly_zero():
    y, p = data(60)
    out = paired_bootstrap(headline_metrics(4), y, p, p.copy(), n_resamples=200, seed=3)
    for ci in out.values():
        assert (ci.diff, ci.low, ci.high) == (0.0, 0.0, 0.0)
        assert not ci.exceeds_noise


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 40))
def test_swapping_a_and_b_negates_the_interval(seed: int, n: int):
    y, pa = data(n, seed)
    _, pb = data(n, seed + 1)
    ab = paired_bootstrap(headline_metrics(4), y, pa, pb, n_resamples=40, seed=seed)
    ba = paired_bootstrap(headline_metrics(4), y, pb, pa, n_resamples=40, seed=seed)
    for k in ab:
        assert ba[k].diff == pytest.approx(-ab[k].diff, abs=1e-12)
        if ab[k].n_resamples:
            assert ba[k].low == pytest.approx(-ab[k].high, abs=1e-12)
            assert ba[k].high == pytest.approx(-ab[k].low, abs=1e-12)
        assert ab[k].n_resamples == ba[k].n_resamples


def test_matches_the_exact_bootstrap_distribution_by_enumeration():
    """n = 5 images: all 5^5 index tuples give the exact bootstrap distribution of the accuracy
    difference; the seeded Monte Carlo interval must sit on its percentiles."""
    y = np.array([0, 0, 1, 1, 0])
    pa = np.eye(2)[[0, 1, 1, 0, 0]].astype(float)  # A right on 0, 2, 4
    pb = np.eye(2)[[0, 0, 1, 1, 1]].astype(float)  # B right on 0, 1, 2, 3
    da = (pa.argmax(1) == y).astype(float)
    db = (pb.argmax(1) == y).astype(float)
    exact = np.array(
        [db[list(t)].mean() - da[list(t)].mean() for t in itertools.product(range(5), repeat=5)]
    )
    lo, hi = np.percentile(exact, [2.5, 97.5])
    acc = {"accuracy": headline_metrics(2)["accuracy"]}
    ci = paired_bootstrap(acc, y, pa, pb, n_resamples=4000, seed=0)["accuracy"]
    assert ci.diff == pytest.approx(db.mean() - da.mean())
    # the distribution lives on multiples of 1/5: the MC percentiles land on the same atoms
    assert ci.low == pytest.approx(lo, abs=1 / 5 + 1e-9)
    assert ci.high == pytest.approx(hi, abs=1 / 5 + 1e-9)
    assert abs(ci.low - lo) + abs(ci.high - hi) < 0.25


def test_seeded_and_a_clear_winner_exceeds_noise():
    y, good = data(200, 1, boost=1.0)
    _, bad = data(200, 2, boost=0.0)
    one = paired_bootstrap(headline_metrics(4), y, bad, good, n_resamples=150, seed=7)
    two = paired_bootstrap(headline_metrics(4), y, bad, good, n_resamples=150, seed=7)
    assert one == two
    for ci in one.values():
        assert ci.low <= ci.diff <= ci.high
        assert ci.low > 0 and ci.exceeds_noise


def test_pairing_is_narrower_than_the_unpaired_intervals():
    """B = A with a few flips: the paired CI of B - A is far narrower than either model's own
    bootstrap CI, and than the interval of B - A from unpaired (independent) resamples."""
    y, pa = data(500, 4)
    pb = pa.copy()
    pb[:10] = pb[:10, ::-1]
    ci = paired_bootstrap(headline_metrics(4), y, pa, pb, n_resamples=300, seed=0)["accuracy"]
    acc = headline_metrics(4)["accuracy"]
    ia, ib = resample_indices(500, 300, 1), resample_indices(500, 300, 2)
    own_a = np.array([acc(y[r], pa[r]) for r in ia])
    own_b = np.array([acc(y[r], pb[r]) for r in ib])
    unpaired = own_b - own_a  # A and B on different resamples
    width = {
        "A": np.subtract(*np.percentile(own_a, [97.5, 2.5])),
        "B": np.subtract(*np.percentile(own_b, [97.5, 2.5])),
        "unpaired B - A": np.subtract(*np.percentile(unpaired, [97.5, 2.5])),
    }
    assert all(w > 0.06 for w in width.values()), width
    assert ci.high - ci.low < 0.03
    assert all(ci.high - ci.low < w / 2 for w in width.values())


def test_the_default_interval_is_95_percent_of_the_paired_resamples():
    """The bounds are the 2.5th and 97.5th percentiles of the same seeded resamples."""
    y, pa = data(120, 5)
    _, pb = data(120, 6, boost=0.5)
    idx = resample_indices(120, 400, 3)
    for name, fn in headline_metrics(4).items():
        d = np.array([fn(y[r], pb[r]) - fn(y[r], pa[r]) for r in idx])
        d = d[np.isfinite(d)]
        lo, hi = np.percentile(d, [2.5, 97.5])
        for ci in (
            paired_bootstrap(headline_metrics(4), y, pa, pb, n_resamples=400, seed=3)[name],
            paired_bootstrap_headline(y, pa, pb, n_resamples=400, seed=3)[name],
        ):
            assert ci.level == 0.95
            assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=1e-12), name


@pytest.mark.parametrize(("discordant", "method"), [(24, "exact"), (25, "chi2"), (26, "chi2")])
def test_mcnemar_is_exact_below_25_discordant_images_only(discordant, method):
    ca = np.r_[np.ones(discordant // 2, bool), np.zeros(discordant - discordant // 2, bool)]
    r = mcnemar(ca, ~ca)
    assert r.a_only + r.b_only == discordant and r.method == method
    b, c = r.a_only, r.b_only
    if method == "exact":
        assert r.p_value == pytest.approx(binomtest(min(b, c), discordant, 0.5).pvalue)
    else:
        stat = max(abs(b - c) - 1.0, 0.0) ** 2 / discordant
        assert r.statistic == pytest.approx(stat) and r.p_value == pytest.approx(chi2.sf(stat, 1))


def test_shape_mismatch_is_refused():
    y, p = data(10)
    with pytest.raises(ValueError, match="shapes differ"):
        paired_bootstrap(headline_metrics(4), y, p, p[:9])


def test_mcnemar_exact_hand_case():
    # b = 2 (only A right), c = 8 (only B right): two-sided exact p = 2 * P(X <= 2 | 10, 1/2)
    ca = np.array([1] * 2 + [0] * 8 + [1] * 5 + [0] * 3, bool)
    cb = np.array([0] * 2 + [1] * 8 + [1] * 5 + [0] * 3, bool)
    r = mcnemar(ca, cb)
    assert (r.a_only, r.b_only, r.method) == (2, 8, "exact")
    assert r.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar(cb, ca).p_value == pytest.approx(r.p_value)


def test_mcnemar_chi_square_hand_case_and_no_discordance():
    ca = np.array([1] * 10 + [0] * 30, bool)
    r = mcnemar(ca, ~ca)
    assert (r.a_only, r.b_only, r.method) == (10, 30, "chi2") and EXACT_BELOW <= 40
    assert r.statistic == pytest.approx((20 - 1) ** 2 / 40)
    assert r.p_value == pytest.approx(0.0026631, rel=1e-3)  # chi2.sf(9.025, 1)
    same = mcnemar(ca, ca)
    assert (same.a_only, same.b_only, same.p_value) == (0, 0, 1.0)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 40),
    k=st.integers(2, 6),
    decimals=st.sampled_from([1, 2, 6]),
    chunk=st.integers(1, 50),
    grouped=st.booleans(),
)
def test_vectorised_headline_path_equals_the_generic_loop(seed, n, k, decimals, chunk, grouped):
    """Oracle: the weighted, vectorised resamples give the generic loop's intervals, with ties
    (rounded probabilities) and classes missing from small resamples; also when whole groups
    (patients of out-of-fold predictions) are resampled."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pa = np.round(rng.dirichlet(np.ones(k), n), decimals)
    pb = np.round(rng.dirichlet(np.ones(k), n), decimals)
    g = [f"p{i}" for i in rng.integers(0, max(n // 3, 1), n)] if grouped else None
    slow = paired_bootstrap(headline_metrics(k), y, pa, pb, n_resamples=30, seed=seed, groups=g)
    fast = paired_bootstrap_headline(y, pa, pb, n_resamples=30, seed=seed, chunk=chunk, groups=g)
    assert slow.keys() == fast.keys()
    for m in slow:
        s, f = slow[m], fast[m]
        assert f.n_resamples == s.n_resamples
        for attr in ("a", "b", "diff", "low", "high"):
            sv, fv = getattr(s, attr), getattr(f, attr)
            assert (np.isnan(sv) and np.isnan(fv)) or fv == pytest.approx(sv, abs=1e-12), attr


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=30),
    st.lists(st.integers(0, 2), min_size=30, max_size=30),
    st.integers(0, 2),
)
def test_class_recall_is_the_share_of_that_class_found(labels, preds, k):
    """Oracle: count by hand; NaN (dropped by the bootstrap) when no image is labelled k."""
    y, pred = np.array(labels), np.array(preds[: len(labels)])
    proba = np.eye(3)[pred]
    mine = [p == k for lab, p in zip(labels, pred, strict=True) if lab == k]
    got = class_recall(k)(y, proba)
    if mine:
        assert got == sum(mine) / len(mine)
    else:
        assert np.isnan(got)


def test_class_recall_difference_is_paired():
    """B also finds the half of the class-1 images that A misses, and nothing else changes: the
    class-1 recall difference is +0.5 with an interval above 0, class 0's is exactly 0."""
    y = np.array([0] * 10 + [1] * 20 + [2] * 10)
    pred_a = y.copy()
    pred_a[10:20] = 0  # A calls ten of the class-1 images class 0
    pa, pb = np.eye(3)[pred_a], np.eye(3)[y]
    metrics = {"r1": class_recall(1), "r0": class_recall(0)}
    cis = paired_bootstrap(metrics, y, pa, pb, n_resamples=300, seed=3)
    assert (cis["r1"].a, cis["r1"].b, cis["r1"].diff) == (0.5, 1.0, 0.5)
    assert 0 < cis["r1"].low <= cis["r1"].high <= 1
    assert (cis["r0"].diff, cis["r0"].low, cis["r0"].high) == (0.0, 0.0, 0.0)
