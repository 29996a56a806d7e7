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
        assert g.space == ("features" if method == "mahalanobis" else "logits")
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
