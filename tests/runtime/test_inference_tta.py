"""Test-time augmentation at run time: the TF views match `core.tta.apply`, the average is the
log of the mean softmax, a flip-invariant model is unchanged by it, and `calibration.json`'s
mode reaches the predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tinymodel
from dermai.core import tta
from dermai.errors import DermaiError
from dermai.runtime import bundle as bundle_mod
from dermai.runtime import inference

CLASSES = ["bcc", "mel", "nv"]


def _batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)


def _oracle(zs: list[np.ndarray], t: float) -> np.ndarray:
    """Brute force: the mean over views of softmax(z), then temperature on its log."""
    p = np.mean([np.exp(z) / np.exp(z).sum(1, keepdims=True) for z in zs], axis=0)
    q = np.exp(np.log(p) / t)
    return q / q.sum(1, keepdims=True)


@pytest.mark.parametrize(("mode", "h", "w"), [("flips", 5, 7), ("dihedral", 6, 6)])
def test_tf_views_match_the_numpy_definition(mode, h, w):
    x = _batch(2, h, w)
    for v in tta.views(mode, h, w):
        assert np.array_equal(np.asarray(inference.tta_view(x, v)), tta.apply(v, x)), v


def test_tta_outputs_are_the_log_of_the_mean_softmax():
    rng = np.random.default_rng(1)
    x = _batch(3, 4, 4)
    weights = rng.normal(0, 0.01, (4 * 4 * 3, 5))

    def fn(v):
        return np.asarray(v, np.float64).reshape(len(x), -1) @ weights

    views = tta.views("dihedral", 4, 4)
    plain, avg = (np.asarray(a, np.float64) for a in inference.tta_outputs(fn, x, views))
    zs = [fn(tta.apply(v, x)) for v in views]
    assert plain == pytest.approx(zs[0].astype(np.float32), rel=1e-6)
    for t in (1.0, 1.7):
        got = inference.softmax(avg, t)
        assert got == pytest.approx(_oracle(zs, t), abs=1e-5)
    one = inference.tta_outputs(fn, x, tta.views("none", 4, 4))
    assert np.array_equal(np.asarray(one[0]), np.asarray(one[1]))


def _invariant_logits_model(h: int, w: int):
    """Logits of the image's mean colour: the same for every turn and flip."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((h, w, 3))
    x = keras.layers.Rescaling(1 / 64.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(len(CLASSES))(x))


@pytest.mark.parametrize(("mode", "h", "w"), [("flips", 6, 10), ("dihedral", 8, 8)])
def test_tta_of_a_flip_invariant_model_equals_no_tta(mode, h, w):
    import tensorflow as tf

    lm = _invariant_logits_model(h, w)
    assert inference.with_tta(lm, "none") is lm  # tta none: the very same model (same bytes)
    x = _batch(4, h, w, seed=2)
    fn = tf.function(inference.with_tta(lm, mode), reduce_retracing=True)  # as evaluate runs it
    plain = np.asarray(lm(x, training=False))
    for t in (1.0, 2.5):
        assert inference.softmax(np.asarray(fn(x)), t) == pytest.approx(
            inference.softmax(plain, t), abs=1e-6
        )


def test_dihedral_with_a_non_square_model_is_a_one_line_error():
    with pytest.raises(DermaiError, match="square"):
        inference.with_tta(_invariant_logits_model(6, 10), "dihedral")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tinymodel.save(tinymodel.build(CLASSES), tmp_path_factory.mktemp("tta"), CLASSES)


def _calibrate(model: Path, doc: dict) -> None:
    model.with_name("calibration.json").write_text(json.dumps(doc))


def test_the_predictor_applies_the_calibrations_tta(model):
    _calibrate(model, {"temperature": 2.0, "tta": "flips"})
    pred = bundle_mod.load(model)
    assert pred.tta == "flips" and pred.temperature == 2.0
    x = _batch(3, tinymodel.H, tinymodel.W, seed=3)
    zs = [np.asarray(pred.logits_fn(np.ascontiguousarray(tta.apply(v, x)))) for v in tta.FLIPS]
    assert np.array_equal(pred.outputs(x)[0], pred.logits_fn(x))  # the guard's: the image as given
    got = pred.analyse(x).probabilities
    assert got == pytest.approx(_oracle([z.astype(np.float64) for z in zs], 2.0), abs=1e-5)
    assert not np.allclose(got, inference.softmax(zs[0], 2.0), atol=1e-4)  # TTA changed it

    _calibrate(model, {"temperature": 2.0})  # no mode: no TTA
    plain = bundle_mod.load(model)
    assert plain.tta == "none"
    expected = inference.softmax(plain.logits_fn(x), 2.0)
    assert np.array_equal(plain.analyse(x).probabilities, expected)


def test_a_bad_or_impossible_tta_in_the_calibration_is_a_one_line_error(model):
    _calibrate(model, {"temperature": 1.0, "tta": "spin"})
    with pytest.raises(DermaiError, match="unknown tta 'spin'"):
        bundle_mod.read_tta(model)
    _calibrate(model, {"temperature": 1.0, "tta": "dihedral"})  # the tiny model is 24 x 32
    with pytest.raises(DermaiError, match="square") as exc:
        bundle_mod.load(model)
    assert "\n" not in str(exc.value)
    model.with_name("calibration.json").unlink()
    assert bundle_mod.read_tta(model) == "none"
