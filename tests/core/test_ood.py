"""OOD scores and threshold: brute-force oracles, properties and the JSON round trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermai.core import ood

floats = st.floats(-50, 50, allow_nan=False, width=32)


@given(
    st.lists(st.lists(floats, min_size=3, max_size=3), min_size=1, max_size=20), st.floats(0.2, 5)
)
@settings(max_examples=50, deadline=None)
def test_energy_and_max_softmax_match_the_definitions(rows, t):
    z = np.array(rows, dtype=np.float64)
    brute = np.array([t * np.log(sum(np.exp(v / t) for v in r)) for r in z])
    assert ood.energy(z, t) == pytest.approx(brute, rel=1e-9, abs=1e-9)
    p = np.exp(z / t) / np.exp(z / t).sum(1, keepdims=True)
    assert ood.max_softmax(z, t) == pytest.approx(p.max(1), rel=1e-9, abs=1e-12)


@given(st.lists(floats, min_size=1, max_size=60), st.floats(0.05, 1.0))
@settings(max_examples=100, deadline=None)
def test_threshold_is_the_largest_that_keeps_the_share(values, keep):
    s = np.array(values, dtype=np.float64)
    t = ood.threshold_keeping(s, keep)
    assert np.mean(s >= t) >= keep - 1e-12
    higher = s[s > t]
    if len(higher):  # any larger candidate keeps too few
        assert np.mean(s >= higher.min()) < keep


def test_auroc_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)
    pairs = [(x > y) + 0.5 * (x == y) for x in a for y in b]
    assert ood.auroc(a, b) == pytest.approx(np.mean(pairs))


def blobs(rng, n=60, d=20):
    means = rng.normal(0, 3, (3, d))
    y = np.repeat(np.arange(3), n)
    return means[y] + rng.normal(0, 1, (3 * n, d)), y, means


def test_mahalanobis_equals_a_brute_force_distance_and_flags_far_points():
    rng = np.random.default_rng(1)
    x, y, _ = blobs(rng)
    m = ood.Mahalanobis.fit(x, y, n_components=8)
    # The projection: the data's mean and orthonormal top principal axes.
    assert m.center == pytest.approx(x.mean(axis=0))
    assert m.components @ m.components.T == pytest.approx(np.eye(8), abs=1e-9)
    top = np.linalg.eigh(np.cov((x - x.mean(0)).T))[1][:, ::-1][:, :8]  # by hand, eigh
    assert np.abs(m.components @ top) @ np.ones(8) == pytest.approx(np.ones(8), abs=1e-6)
    # The oracle fits its own class means and tied covariance (class-centred residuals,
    # Ledoit-Wolf shrinkage) from the projected training data, not the model's.
    from sklearn.covariance import ledoit_wolf

    z = (x - m.center) @ m.components.T
    means = {c: z[y == c].mean(axis=0) for c in np.unique(y)}
    resid = np.concatenate([z[y == c] - mu for c, mu in means.items()])
    precision = np.linalg.inv(ledoit_wolf(resid, assume_centered=True)[0])
    q = rng.normal(0, 3, (5, 20))
    zq = (q - m.center) @ m.components.T
    brute = [-min(float((zi - mu) @ precision @ (zi - mu)) for mu in means.values()) for zi in zq]
    assert m.score(q) == pytest.approx(brute, rel=1e-9)
    far = x[:10] + 25.0
    assert m.score(x).min() > m.score(far).max()


@given(st.integers(0, 10_000), st.integers(1, 7), st.integers(8, 14), st.integers(10, 40))
@settings(max_examples=30, deadline=None)
def test_ppca_equals_the_explicit_gaussian_log_density(seed, k, d, n):
    """Oracle: log N(x; mean, W' diag(v) W + s (I - W' W)) with the D x D covariance built and
    inverted explicitly, and scikit-learn's own PCA.score_samples. The explicit oracle gets the
    fitted parameters with W made exactly orthonormal: the saved W is rounded to float32, whose
    rows are orthonormal only to ~1e-7, and the score's formula (like the browser's) assumes
    orthonormal rows (hypothesis found n=10, d=8, k=6 off by 1.9e-6 relative without it)."""
    from scipy.stats import multivariate_normal
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d)) + rng.normal(0, 5, d)
    m = ood.Ppca.fit(x, k)
    w = np.linalg.qr(m.components.T)[0].T  # the same subspace, rows orthonormal in float64
    v, s = m.variances, m.noise_variance
    exact = ood.Ppca(m.mean, w, v, s)
    cov = w.T @ np.diag(v) @ w + s * (np.eye(d) - w.T @ w)
    q = np.r_[x[:3], rng.normal(0, 10, (4, d))]
    brute = multivariate_normal(m.mean, cov, allow_singular=False).logpdf(q)
    assert exact.score(q) == pytest.approx(brute, rel=1e-6, abs=1e-6)
    ref = PCA(n_components=m.variances.shape[0], svd_solver="full").fit(x)
    assert m.score(q) == pytest.approx(ref.score_samples(q), rel=1e-4, abs=1e-3)


def test_ppca_sees_what_lies_off_the_training_subspace():
    """A point at the training mean plus a step orthogonal to every principal component: the
    PCA-projected Mahalanobis cannot see it, PPCA refuses it."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(0, 1, (30, 30)))[0]
    x = (rng.normal(0, 1, (200, 4)) * [9, 7, 5, 3]) @ basis[:, :4].T
    x += rng.normal(0, 0.1, x.shape)
    m = ood.Ppca.fit(x, 4)
    off = m.mean + 5 * basis[:, 10]  # far off the 4-d subspace, on its centre
    maha = ood.Mahalanobis.fit(x, np.zeros(len(x)), n_components=4)
    assert maha.score(off[None])[0] > np.quantile(maha.score(x), 0.5)
    assert m.score(off[None])[0] < m.score(x).min()


def test_fit_keeps_the_requested_share_of_validation_and_round_trips_through_json():
    rng = np.random.default_rng(2)
    x, y, means = blobs(rng)
    xv = means[np.repeat(np.arange(3), 20)] + rng.normal(0, 1, (60, 20))
    logits, lv = x @ rng.normal(0, 1, (20, 3)), xv @ rng.normal(0, 1, (20, 3))
    for method in ood.METHODS:
        g = ood.fit(
            method,
            train_logits=logits,
            train_features=x,
            train_labels=y,
            val_logits=lv,
            val_features=xv,
            keep=0.95,
            n_components=8,
        )
        # set on VAL: exactly floor(5% of 60) = 3 validation images fall below the threshold
        val_scores = g.score(lv, xv)
        assert g.threshold == ood.threshold_keeping(val_scores, 0.95)
        assert g.accept(lv, xv).mean() == 57 / 60
        assert g.space == ("features" if method in ("mahalanobis", "ppca") else "logits")
        assert g.needs_features == (method in ("mahalanobis", "ppca"))
        back = ood.Guard.from_dict(json.loads(json.dumps(g.to_dict())))
        assert back.method == method and back.threshold == g.threshold
        assert back.score(lv, xv) == pytest.approx(g.score(lv, xv), rel=1e-4, abs=1e-4)
    g = ood.fit(
        "mahalanobis",
        train_logits=logits,
        train_features=x,
        train_labels=y,
        val_logits=lv,
        val_features=xv,
        space="logits",
    )
    assert g.space == "logits" and g.accept(lv, None).mean() >= 0.95
    with pytest.raises(ValueError, match="not an OOD guard"):
        ood.Guard.from_dict({"method": "vibes", "space": "logits"})
    with pytest.raises(ValueError, match="without its fitted state"):
        ood.Guard.from_dict({"method": "ppca", "space": "trunk", "threshold": 0, "keep": 0.9})


def test_a_saved_ppca_guard_scores_exactly_as_fitted():
    """The threshold is set with the float32 parameters the JSON carries, so a guard read back
    accepts exactly the validation images the fitted one accepted."""
    rng = np.random.default_rng(4)
    x, xv = rng.normal(0, 1, (80, 12)), rng.normal(0, 1, (41, 12))
    z = rng.normal(0, 1, (80, 3))
    g = ood.fit(
        "ppca",
        train_logits=z,
        train_features=x,
        train_labels=np.zeros(80),
        val_logits=z[:41],
        val_features=xv,
        keep=0.9,
        n_components=4,
        space="trunk",
    )
    back = ood.Guard.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.space == "trunk" and back.needs_features
    assert np.array_equal(back.score(None, xv), g.score(None, xv))
    assert back.accept(None, xv).mean() >= 0.9
