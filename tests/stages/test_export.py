"""`dermai export` through the CLI on tiny TFRecords: both models, metadata, parity metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy import CLASSES, H, W, tiny_keras, tiny_tfrecords
from dermai.cli import main

# an energy guard as `dermai evaluate` writes it (core.ood.Guard.to_dict)
GUARD = {
    "method": "energy",
    "space": "logits",
    "threshold": 1.25,
    "keep": 0.95,
    "temperature": 1.5,
    "measured": {"accepted_val": 0.95},
    "rule": "in distribution when score >= threshold",
}


def own_copy(tiny_lite0: Path, folder: Path) -> Path:
    """The session's shared tiny Lite0 (conftest.py) copied into `folder`, for a test that
    writes beside the model or edits its train_params.json; returns the copy's model.keras."""
    return shutil.copytree(tiny_lite0.parent, folder) / tiny_lite0.name


@pytest.fixture(scope="module")
def exported(tiny_lite0, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    tfr, prm = tiny_tfrecords(tmp)
    keras_path = own_copy(tiny_lite0, tmp / "models")  # calibration.json and exports go beside
    models = keras_path.parent
    (models / "calibration.json").write_text(json.dumps({"temperature": 1.5}))
    ood = tmp / "ood.json"  # not beside the model: --ood names it
    ood.write_text(json.dumps(GUARD))
    out = {
        "float32": models / "model_float32.tflite",
        "int8": models / "model_int8.tflite",
        "metrics": tmp / "reports" / "export.json",
        "tfrecords": tfr,
        "params": prm,
        "keras": keras_path,
    }
    assert (
        main(
            [
                "export",
                "--params",
                str(prm),
                "--model",
                str(keras_path),
                "--calibration",
                str(models / "calibration.json"),
                "--ood",
                str(ood),
                "--tfrecords",
                str(tfr),
                "--float-out",
                str(out["float32"]),
                "--int8-out",
                str(out["int8"]),
                "--metrics",
                str(out["metrics"]),
            ]
        )
        == 0
    )
    return out


def test_metrics_report_parity_sizes_and_latencies(exported):
    m = json.loads(exported["metrics"].read_text())
    assert m["test_images"] == 9 and m["representative_images"] == 12
    assert m["temperature"] == 1.5
    from dermai.params import ExportParams

    assert m["float_stages"] == ExportParams().float_stages  # recorded (selective: test_convert)
    assert m["float32"]["agreement"] == 1.0 and m["float32"]["max_abs_logit_diff"] < 1e-3
    assert 0.0 <= m["int8"]["agreement"] <= 1.0
    for kind in ("float32", "int8"):
        assert m[kind]["bytes"] == exported[kind].stat().st_size
        assert "latency_ms" not in m[kind]  # a timing: bench/bench_tflite.py, not an output
        assert 0.0 <= m[kind]["balanced_accuracy"] <= 1.0
    assert m["int8_vs_float32"]["size_ratio"] < 0.5
    assert set(m["goals_met"]) == {
        "float32_agreement",
        "int8_agreement",
        "int8_size_ratio",
    }


def test_each_tflite_alone_predicts_with_its_classes_and_temperature(exported, tmp_path):
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime.tflite import read_metadata

    for kind in ("float32", "int8"):
        alone = tmp_path / f"{kind}.tflite"  # no train_params.json or calibration.json here
        alone.write_bytes(exported[kind].read_bytes())
        meta = read_metadata(alone)
        assert meta["quantization"] == kind and meta["classes"] == CLASSES
        p = bundle_mod.load(alone)
        assert (p.classes, p.height, p.width, p.temperature) == (CLASSES, H, W, 1.5)
        # the OOD guard travels too, with the kind of training images and the refusal text
        kind = "images like its training data"  # tiny_keras's train_params name no data
        assert meta["ood"] == GUARD | {"image_kind": kind, "message": bundle_mod.ood_message(kind)}
        assert meta["training_data"]["image_kind"] == kind
        (tmp_path / "ood.json").write_text(json.dumps(GUARD | {"threshold": -99.0}))
        guard, features_fn = bundle_mod.guard_of(alone)  # the embedded one wins
        assert features_fn is None and guard.to_dict() == GUARD
        assert bundle_mod.training_image_kind(alone) == kind
        x = np.random.default_rng(0).uniform(0, 255, (3, H, W, 3)).astype(np.float32)
        probs = p.analyse(x).probabilities
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_representative_set_is_a_seeded_sample_of_train(exported):
    from dermai.models.data import representative_images

    a = representative_images(exported["tfrecords"], 5, seed=3)
    b = representative_images(exported["tfrecords"], 5, seed=3)
    c = representative_images(exported["tfrecords"], 5, seed=4)
    assert a.shape == (5, H, W, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(representative_images(exported["tfrecords"], 10_000, seed=3)) == 18  # all of TRAIN


def test_class_mismatch_is_refused(exported, tmp_path):
    other = tmp_path / "m"
    other.mkdir()
    keras_path = tiny_keras(other, classes=["akiec", "df"])
    rc = main(
        [
            "export",
            "--params",
            str(exported["params"]),
            "--model",
            str(keras_path),
            "--tfrecords",
            str(exported["tfrecords"]),
            "--float-out",
            str(other / "f.tflite"),
            "--int8-out",
            str(other / "q.tflite"),
            "--metrics",
            str(other / "m.json"),
        ]
    )
    assert rc == 1 and not (other / "f.tflite").exists()


def test_a_model_trained_with_another_colour_constancy_is_refused(
    exported, tiny_lite0, tmp_path, capsys
):
    """The TFRecords (no colour constancy) are not what this model was trained on (p = 6):
    export stops before converting, rather than calibrate int8 and embed a mismatched setting."""
    keras_path = own_copy(tiny_lite0, tmp_path / "m")
    other = keras_path.parent
    f = other / "train_params.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "colour_constancy": 6.0}))
    args = ["export", "--params", str(exported["params"]), "--model", str(keras_path)]
    args += ["--tfrecords", str(exported["tfrecords"]), "--float-out", str(other / "f.tflite")]
    args += ["--int8-out", str(other / "q.tflite"), "--metrics", str(other / "m.json")]
    assert main(args) == 1 and not (other / "f.tflite").exists()
    assert "colour constancy" in capsys.readouterr().err


def test_a_named_guard_that_is_missing_or_invalid_is_refused(exported, tmp_path, capsys):
    models = exported["keras"].parent
    base = [
        "export",
        "--params",
        str(exported["params"]),
        "--model",
        str(exported["keras"]),
        "--calibration",
        str(models / "calibration.json"),
        "--tfrecords",
        str(exported["tfrecords"]),
        "--float-out",
        str(tmp_path / "f.tflite"),
        "--int8-out",
        str(tmp_path / "q.tflite"),
        "--metrics",
        str(tmp_path / "m.json"),
    ]
    assert main([*base, "--ood", str(tmp_path / "nope.json")]) == 1
    assert "OOD guard not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"method": "crystal-ball"}))
    assert main([*base, "--ood", str(tmp_path / "bad.json")]) == 1
    assert "not a valid OOD guard" in capsys.readouterr().err
    assert not (tmp_path / "f.tflite").exists()


@pytest.mark.timeout(900)  # fits a guard and converts twice (int8 calibration): minutes when busy
def test_a_trunk_guard_travels_with_its_trunk_output_and_decides_as_keras(exported, tmp_path):
    """A PPCA guard on the frozen trunk (the default): both .tflite files get a second output,
    the pooled trunk, named in the metadata; Python reads the guard and that output from the
    file alone, and the export report compares its test decisions with the Keras model's."""
    import keras

    from dermai.models import archive
    from dermai.params import EvaluateParams
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference
    from dermai.runtime.guard import fit_guard
    from dermai.runtime.tflite import TfliteModel

    km = archive.load_keras(exported["keras"])
    cfg = EvaluateParams(ood_method="ppca", ood_space="trunk", ood_components=4)
    doc = fit_guard(km, str(exported["tfrecords"]), cfg, 1.5)
    assert doc["method"] == "ppca" and doc["space"] == "trunk"
    assert doc["measured"]["accepted_val"] >= 0.95 and doc["measured"]["n_train"] == 18
    (tmp_path / "ood.json").write_text(json.dumps(doc))
    models = exported["keras"].parent
    out = {k: tmp_path / f"{k}.tflite" for k in ("float32", "int8")}
    args = ["export", "--params", str(exported["params"]), "--model", str(exported["keras"])]
    args += ["--calibration", str(models / "calibration.json"), "--ood", str(tmp_path / "ood.json")]
    args += ["--tfrecords", str(exported["tfrecords"]), "--float-out", str(out["float32"])]
    args += ["--int8-out", str(out["int8"]), "--metrics", str(tmp_path / "m.json")]
    assert main(args) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["float32"]["agreement"] == 1.0  # the logits are the same with two outputs
    assert report["guard"]["float32"]["decision_agreement"] == 1.0
    assert 0.0 <= report["guard"]["int8"]["decision_agreement"] <= 1.0
    x = np.random.default_rng(5).uniform(0, 255, (6, H, W, 3)).astype(np.float32)
    want_trunk = np.asarray(inference.trunk_model(km)(x))
    want_logits = np.asarray(inference.logits_model(km)(x))
    for kind, path in out.items():
        tfl = TfliteModel(path)
        assert tfl.meta["outputs"] == ["logits", "trunk"] and tfl.has_trunk
        assert tfl.meta["ood"]["ppca"] == doc["ppca"]
        assert tfl.trunk(x).shape == want_trunk.shape
        if kind == "float32":
            np.testing.assert_allclose(tfl(x), want_logits, atol=1e-3)
            np.testing.assert_allclose(tfl.trunk(x), want_trunk, atol=1e-3, rtol=1e-4)
        alone = tmp_path / kind / "m.tflite"  # no ood.json nor model.keras beside it
        alone.parent.mkdir()
        alone.write_bytes(path.read_bytes())
        guard, features_fn = bundle_mod.guard_of(alone)
        assert guard is not None and guard.space == "trunk" and features_fn is not None
        assert np.array_equal(features_fn(x), tfl.trunk(x))
    keras_guard, keras_fn = bundle_mod.guard_of(exported["keras"], km)
    assert keras_guard is None  # no ood.json beside the shared model
    (models / "ood.json").write_text(json.dumps(doc))
    try:
        keras_guard, keras_fn = bundle_mod.guard_of(exported["keras"], km)
        assert keras_guard is not None and keras_fn is not None
        f32 = bundle_mod.guard_of(out["float32"])[1]
        assert f32 is not None
        assert np.array_equal(
            keras_guard.accept(want_logits, keras_fn(x)),
            keras_guard.accept(TfliteModel(out["float32"])(x), f32(x)),
        )
    finally:
        (models / "ood.json").unlink()
    keras.backend.clear_session()


def test_a_trunk_guard_on_a_tflite_without_the_trunk_output_is_refused(exported, tmp_path):
    from dermai.errors import DermaiError
    from dermai.runtime import bundle as bundle_mod

    m = tmp_path / "m.tflite"
    m.write_bytes(exported["float32"].read_bytes())
    doc = {"method": "ppca", "space": "trunk", "threshold": -1.0, "keep": 0.95}
    doc["ppca"] = {"mean": [0.0], "components": [[1.0]], "variances": [1.0], "noise_variance": 1.0}
    from dermai.runtime.tflite import embed_metadata, read_metadata

    m.write_bytes(embed_metadata(m.read_bytes(), read_metadata(m) | {"ood": doc}))
    with pytest.raises(DermaiError, match="has no trunk output"):
        bundle_mod.guard_of(m)
