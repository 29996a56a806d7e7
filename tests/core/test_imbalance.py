import numpy as np
import pytest

from dermai.core.imbalance import class_weights, sampling_weights

Y = np.array([0] * 80 + [1] * 15 + [2] * 5)


def test_full_inverse_frequency():
    w = class_weights(Y, 3, power=1.0)
    # N / (K n_c) = 100/240, 100/45, 100/15, then scaled so the mean sample weight is 1
    raw = np.array([100 / 240, 100 / 45, 100 / 15])
    assert np.allclose(w, raw / ((raw * [80, 15, 5]).sum() / 100))
    assert np.isclose((w[Y]).mean(), 1.0)


def test_smoothing_power_between_none_and_full():
    none = class_weights(Y, 3, power=0.0)
    half = class_weights(Y, 3, power=0.5)
    full = class_weights(Y, 3, power=1.0)
    assert np.allclose(none, 1.0)
    assert full[2] / full[0] > half[2] / half[0] > 1.0
    assert np.isclose(half[2] / half[0], np.sqrt(80 / 5))


def test_absent_class_gets_zero_weight():
    w = class_weights(np.array([0, 0, 1]), 3, power=1.0)
    assert w[2] == 0 and w[0] > 0


@pytest.mark.parametrize(("power", "expected"), [(1.0, [1 / 3] * 3), (0.0, [0.8, 0.15, 0.05])])
def test_sampling_weights(power, expected):
    assert np.allclose(sampling_weights(Y, 3, power), expected)
