"""The bundle: the one module that names and finds a model's files (train_params.json,
calibration.json, ood.json, model_card.json), and the one `analyse` path every runtime takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tinymodel
from dermai.errors import DermaiError
from dermai.runtime import bundle as bundle_mod


def _params(path, classes=("a", "b")):
    path.write_text(json.dumps({"classes": list(classes), "input_shape": [8, 8, 3]}))
    return path


def test_train_params_default_to_beside_the_model_and_explicit_wins(tmp_path):
    model = tmp_path / "m" / "model.keras"
    model.parent.mkdir()
    _params(model.parent / "train_params.json", ("beside",))
    other = _params(tmp_path / "elsewhere.json", ("explicit",))
    assert bundle_mod.read_train_params(model)["classes"] == ["beside"]
    assert bundle_mod.read_train_params(model, other)["classes"] == ["explicit"]


def test_missing_or_incomplete_train_params_is_a_one_line_error(tmp_path):
    with pytest.raises(DermaiError, match=r"train_params\.json not found") as exc:
        bundle_mod.read_train_params(tmp_path / "model.keras")
    assert "\n" not in str(exc.value)
    (tmp_path / "train_params.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(DermaiError, match="lacks classes or input_shape"):
        bundle_mod.read_train_params(tmp_path / "model.keras")


def test_temperature(tmp_path):
    model = tmp_path / "model.keras"
    assert bundle_mod.read_temperature(model) == 1.0  # uncalibrated
    with pytest.raises(DermaiError, match="calibration not found"):
        bundle_mod.read_temperature(model, required=True)
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 1.5}))
    assert bundle_mod.read_temperature(model) == 1.5
    bad = tmp_path / "bad.json"
    for t in (0, -1, "nan"):
        bad.write_text(json.dumps({"temperature": t}))
        with pytest.raises(DermaiError, match="temperature"):
            bundle_mod.read_temperature(model, bad)


def test_side_files_are_named_once_and_found_beside_the_model(tmp_path):
    model = tmp_path / "m" / "model.keras"
    names = (
        bundle_mod.TRAIN_PARAMS_FILE,
        bundle_mod.CALIBRATION_FILE,
        bundle_mod.OOD_FILE,
        bundle_mod.MODEL_CARD_FILE,
    )
    assert names == ("train_params.json", "calibration.json", "ood.json", "model_card.json")
    for name in names:
        assert bundle_mod.side_path(model, name) == model.with_name(name)
        assert bundle_mod.side_path(model, name, tmp_path / "x.json") == tmp_path / "x.json"


CLASSES = ["bcc", "mel", "nv"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny stand-in classifier saved as `dermai train` saves one (model.keras + params)."""
    return tinymodel.save(tinymodel.build(CLASSES), tmp_path_factory.mktemp("bundle"), CLASSES)


def _x(n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, tinymodel.H, tinymodel.W, 3)).astype(np.float32)


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max(1, keepdims=True)) / t)
    return e / e.sum(1, keepdims=True)


def test_analyse_gives_logits_calibrated_probabilities_and_all_in_without_a_guard(tiny, tmp_path):
    model = Path(tmp_path / "m" / "model.keras")
    model.parent.mkdir()
    for f in tiny.parent.iterdir():
        (model.parent / f.name).write_bytes(f.read_bytes())
    (model.parent / "calibration.json").write_text(json.dumps({"temperature": 2.0}))
    b = bundle_mod.load(model)
    assert (b.classes, b.height, b.width, b.temperature, b.tta) == (
        CLASSES,
        tinymodel.H,
        tinymodel.W,
        2.0,
        "none",
    )
    x = _x()
    a = b.analyse(x)
    z = np.asarray(b.keras_model.predict(x, verbose=0))  # the softmax model itself
    np.testing.assert_allclose(_softmax(a.logits.astype(np.float64), 1.0), z, atol=1e-5)
    np.testing.assert_allclose(
        a.probabilities, _softmax(a.scored.astype(np.float64), 2.0), atol=1e-6
    )
    assert a.in_distribution.all() and a.ood_scores is None
    assert a.probabilities.dtype == np.float32
    # evaluate loads it uncalibrated (it fits the temperature) and with its own TTA mode
    raw = bundle_mod.load(model, calibrated=False, tta="flips", guard=False)
    assert raw.temperature == 1.0 and raw.tta == "flips"
    assert np.array_equal(raw.analyse(x).logits, a.logits)  # view 0: the images as given
    assert not np.allclose(raw.analyse(x).scored, a.logits, atol=1e-4)


def test_analyse_applies_the_guard_beside_the_model(tiny, tmp_path):
    from dermai.core import ood

    folder = tmp_path / "m"
    folder.mkdir()
    for f in tiny.parent.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    model = folder / "model.keras"
    x = _x(8, seed=1)
    logits = bundle_mod.load(model).analyse(x).logits.astype(np.float64)
    scores = ood.energy(logits, 1.0)
    # a threshold between the scores: some images in, some out, decided by the guard's rule
    threshold = float(np.median(scores))
    guard = ood.Guard("energy", threshold, 0.5, "logits")
    (folder / "ood.json").write_text(json.dumps(guard.to_dict()))
    b = bundle_mod.load(model)
    a = b.analyse(x)
    assert b.guard is not None and a.ood_scores is not None
    np.testing.assert_allclose(a.ood_scores, scores, rtol=1e-5)
    assert a.in_distribution.tolist() == (scores >= threshold).tolist()
    assert 0 < a.in_distribution.sum() < len(x)  # not vacuous
    assert bundle_mod.load(model, guard=False).guard is None
    (folder / "ood.json").write_text("{not json")
    with pytest.raises(DermaiError, match="ood.json") as exc:
        bundle_mod.load(model)
    assert "\n" not in str(exc.value)


def test_top_ranks_by_probability_and_keeps_class_order_on_ties():
    p = np.array([0.2, 0.4, 0.2, 0.2])
    assert bundle_mod.top(p, ["a", "b", "c", "d"]) == [("b", 0.4), ("a", 0.2), ("c", 0.2)]


def test_export_guard_adds_the_image_kind_and_the_refusal_text(tiny, tmp_path, caplog):
    meta = bundle_mod.read_train_params(tiny)
    assert bundle_mod.export_guard(tmp_path / "model.keras", None, meta) is None  # none: warned
    assert "carry no out-of-distribution guard" in caplog.text
    with pytest.raises(DermaiError, match="OOD guard not found"):
        bundle_mod.export_guard(tmp_path / "model.keras", tmp_path / "missing.json", meta)
    doc = {"method": "energy", "space": "logits", "threshold": 1.0, "keep": 0.9, "temperature": 1}
    (tmp_path / "ood.json").write_text(json.dumps(doc))
    out = bundle_mod.export_guard(tmp_path / "model.keras", None, meta)
    assert out is not None and {k: out[k] for k in doc} == doc
    assert out["message"] == bundle_mod.ood_message(out["image_kind"])


def test_unknown_model_files_are_one_line_errors(tmp_path):
    with pytest.raises(DermaiError, match="model not found"):
        bundle_mod.load(tmp_path / "missing.keras")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(DermaiError, match="use .keras or .tflite"):
        bundle_mod.load(other)


def test_keras_functions_run_batch_by_batch(monkeypatch):
    """The guard's Keras feature function (and the logits) see at most BATCH images per forward
    pass, whatever N: the whole HAM10000 test split through the trunk in one call needed about
    24 GB and killed `dermai export`. The output equals one pass over all images."""
    tf = pytest.importorskip("tensorflow")
    monkeypatch.setattr(bundle_mod, "BATCH", 4)
    seen: list[int] = []

    class Spy:
        inputs = ("image",)  # one input, as the guard's feature model
        output_shape = (None, 3)

        def __call__(self, x, training=False):
            def record(n):
                seen.append(int(n))
                return np.int64(0)

            done = tf.py_function(record, [tf.shape(x)[0]], tf.int64)
            with tf.control_dependencies([done]):
                return tf.reduce_mean(x, axis=[1, 2])

    x = np.random.default_rng(0).uniform(0, 255, (11, 5, 6, 3)).astype(np.float32)
    got = bundle_mod.keras_batched(Spy())(x)
    assert seen == [4, 4, 3]
    np.testing.assert_allclose(got, x.mean(axis=(1, 2)), rtol=1e-5)
    assert bundle_mod.keras_batched(Spy())(x[:0]).shape == (0, 3)
