"""Temperature scaling, ECE, reliability data and NLL on fixed toy problems."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import log_loss

from dermai.core import calibration


def toy(n: int = 4000, k: int = 5, scale: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z): calibrated at T=1 by construction; logits z*scale are
    over- (scale>1) or under-confident (scale<1), so the ideal temperature is `scale`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = softmax(z, axis=1)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, y


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_temperature_recovers_the_miscalibration_and_lowers_nll_and_ece(scale):
    logits, y = toy(scale=scale)
    t = calibration.fit_temperature(logits, y)
    assert t == pytest.approx(scale, rel=0.1)
    assert calibration.nll(logits, y, t) < calibration.nll(logits, y, 1.0)
    before = calibration.ece(calibration.probabilities(logits, 1.0), y)
    after = calibration.ece(calibration.probabilities(logits, t), y)
    assert after < before
    assert after < 0.03


def test_temperature_keeps_the_argmax():
    logits, y = toy(scale=3.0, n=500)
    t = calibration.fit_temperature(logits, y)
    assert (calibration.probabilities(logits, t).argmax(1) == logits.argmax(1)).all()


def test_nll_matches_sklearn_log_loss():
    logits, y = toy(n=300, scale=2.0)
    assert calibration.nll(logits, y) == pytest.approx(
        log_loss(y, softmax(logits, axis=1), labels=range(5))
    )
    assert calibration.nll(logits, y, 2.0) == pytest.approx(
        log_loss(y, softmax(logits / 2.0, axis=1), labels=range(5))
    )


def test_ece_by_hand():
    # Two bins used (of 10): conf 0.95 x2 (one right) and 0.55 x2 (both right).
    proba = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    expected = 0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55)
    assert calibration.ece(proba, y, bins=10) == pytest.approx(expected)
    assert calibration.mce(proba, y, bins=10) == pytest.approx(0.45)
    rel = calibration.reliability(proba, y, bins=10)
    assert rel["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert rel["accuracy"][9] == 0.5 and rel["confidence"][5] == pytest.approx(0.55)
    assert np.isnan(rel["accuracy"][0]) and np.isnan(rel["confidence"][0])
    assert rel["lower"][0] == 0.0 and rel["upper"][-1] == 1.0


def test_reliability_counts_every_sample_and_perfect_calibration_has_low_ece():
    logits, y = toy(n=20000, scale=1.0, seed=3)
    proba = calibration.probabilities(logits)
    rel = calibration.reliability(proba, y, bins=15)
    assert rel["count"].sum() == len(y)
    assert calibration.ece(proba, y, bins=15) < 0.02


def test_empty_input():
    assert calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0
    assert np.isnan(calibration.ece(np.zeros((0, 3)), np.zeros(0, int)))
