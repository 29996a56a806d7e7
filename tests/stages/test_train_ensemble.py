"""`dermai train` with `train.ensemble: 2` on tiny TFRecords and one feature cache: the saved
model is one graph whose logits are the mean of the two single models trained apart with
train.seed 42 and 43 (the oracle), and export, predict and the feature-space OOD guard take it
as they take a single model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorflow")

from deploy import TINY_TRAIN, tiny_tfrecords
from dermai.cli import main

pytestmark = pytest.mark.timeout(900)  # tfrecords, features, three short trainings, export


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(tfrecords, params.yaml, feature cache): one plain copy, cut after block1 (deeper, the
    untrained backbone's activations vanish in float16), phase 1 only (phase 2 of the members
    is covered on the stand-in classifier in tests/models/test_training.py)."""
    tmp = tmp_path_factory.mktemp("ensemble")
    records, prm = tiny_tfrecords(tmp)
    params = yaml.safe_load(prm.read_text())
    params["train"] = dict(TINY_TRAIN)
    prm.write_text(yaml.safe_dump(params))
    cache = tmp / "features"
    argv = ["--params", str(prm), "--tfrecords", str(records), "--pretrained", "unused.h5"]
    assert main(["features", *argv, "--out", str(cache)]) == 0
    return records, prm, cache


def _train(setup: tuple[Path, Path, Path], out: Path, **train: int | bool) -> Path:
    records, prm, cache = setup
    params = yaml.safe_load(prm.read_text())
    params["train"].update(train)
    out.mkdir(parents=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    model = out / "model.keras"
    argv = ["train", "--params", str(out / "params.yaml"), "--tfrecords", str(records)]
    argv += ["--pretrained", "unused.h5", "--features", str(cache), "--model", str(model)]
    argv += ["--train-params", str(out / "train_params.json")]
    assert main([*argv, "--live", str(out / "live")]) == 0
    return model


@pytest.fixture(scope="module")
def models(setup, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("models")
    return {
        "ensemble": _train(setup, tmp / "ensemble", ensemble=2),
        "seed42": _train(setup, tmp / "seed42"),
        "seed43": _train(setup, tmp / "seed43", seed=43),
    }


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    import keras

    from dermai.runtime.inference import logits_model

    model = keras.saving.load_model(path, compile=False)
    return np.asarray(logits_model(model)(x, training=False), dtype=np.float64)


def test_ensemble_logits_are_the_mean_of_the_single_seed_models(setup, models) -> None:
    import keras

    from dermai.models import data

    x, _ = data.split_arrays(setup[0], "val")
    z42, z43 = _logits(models["seed42"], x), _logits(models["seed43"], x)
    assert np.abs(z42 - z43).max() > 1e-3  # two seeds, two models: not vacuous
    np.testing.assert_allclose(
        _logits(models["ensemble"], x), (z42 + z43) / 2, rtol=1e-5, atol=1e-6
    )
    model = keras.saving.load_model(models["ensemble"], compile=False)
    assert [layer.name for layer in model.layers] == ["image", "lower", "members", "head"]
    assert [layer.name for layer in model.layers[2].layers[1:]] == [
        "upper",
        "upper_1",
        "member_features",
    ]
    meta = json.loads((models["ensemble"].parent / "train_params.json").read_text())
    assert meta["params"]["train"]["ensemble"] == 2
    assert meta["ensemble"]["seeds"] == [42, 43] and len(meta["ensemble"]["best_epochs"]) == 2
    summary = json.loads((models["ensemble"].parent / "live" / "metrics.json").read_text())
    ens = summary["ensemble"]
    assert ens["members"] == 2 and [ens[f"member_{k}"]["seed"] for k in (0, 1)] == [42, 43]
    assert 0.0 <= ens["val_balanced_accuracy"] <= 1.0
    # dvclive's per-epoch curves are member 0's: those of the single model of seed 42
    single = json.loads((models["seed42"].parent / "live" / "metrics.json").read_text())
    assert {k: v for k, v in summary.items() if k != "ensemble"} == single
    assert "ensemble" not in json.loads((models["seed42"].parent / "train_params.json").read_text())


# ~5 min under load: two LiteRT conversions of the 2-member graph, the guard fit, 4 predicts
@pytest.mark.slow
def test_export_predict_and_the_feature_guard_take_the_ensemble(
    setup, models, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    import keras

    from deploy import lesion
    from dermai.params import EvaluateParams
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import guard

    records, prm, _ = setup
    folder = tmp_path / "models"
    shutil.copytree(models["ensemble"].parent, folder)
    model = folder / "model.keras"
    x = np.stack(
        [np.asarray(lesion("mel", seed=s, height=24, width=32), np.float32) for s in (1, 2)]
    )
    out = {k: folder / f"model_{k}.tflite" for k in ("float32", "int8")}
    argv = ["export", "--params", str(prm), "--model", str(model), "--tfrecords", str(records)]
    argv += ["--float-out", str(out["float32"]), "--int8-out", str(out["int8"])]
    assert main([*argv, "--metrics", str(tmp_path / "export.json")]) == 0
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["float32"]["agreement"] == 1.0
    assert report["float32"]["max_abs_logit_diff"] < 1e-4
    np.testing.assert_allclose(
        bundle_mod.load(out["float32"]).logits_fn(x), _logits(model, x), rtol=1e-4, atol=1e-5
    )
    img = tmp_path / "lesion.png"
    lesion("mel", seed=3).save(img)
    for path in (model, out["float32"], out["int8"]):
        capsys.readouterr()
        assert main(["predict", "--model", str(path), str(img)]) == 0
        probs = json.loads(capsys.readouterr().out)["probabilities"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    # The OOD guard on penultimate features: the members' features, joined (2 x 1280).
    km = keras.saving.load_model(model, compile=False)
    assert guard.guard_inputs(km, str(records), "val")["features"].shape[1] == 2 * 1280
    cfg = EvaluateParams(ood_method="mahalanobis", ood_space="features", ood_components=4)
    (folder / "ood.json").write_text(json.dumps(guard.fit_guard(km, str(records), cfg, 1.0)))
    g, features_fn = bundle_mod.guard_of(model)
    assert g is not None and features_fn is not None
    assert features_fn(x).shape == (2, 2 * 1280)

    # predict applies that guard to the ensemble's joined features: the same decision
    from PIL import Image

    pred = bundle_mod.load(model)
    xi = pred.prepare(Image.open(img))[None]
    expected = bool(g.accept(pred.logits_fn(xi), features_fn(xi))[0])
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(img)]) == 0
    assert json.loads(capsys.readouterr().out)["in_distribution"] is expected


# ~3 min under load: three image-pipeline trainings of the whole tiny Lite0
@pytest.mark.slow
def test_image_pipeline_ensemble_is_the_mean_of_its_single_seed_models(setup, tmp_path) -> None:
    """The GPU path (`feature_cache: false`) trains its members from the TFRecords alike."""
    from dermai.models import data

    records, prm, _ = setup
    no_cache = (records, prm, tmp_path / "no-cache")  # never read with feature_cache false
    runs = {
        name: _train(no_cache, tmp_path / name, feature_cache=False, **kw)
        for name, kw in (("ens", {"ensemble": 2}), ("s42", {}), ("s43", {"seed": 43}))
    }
    x, _ = data.split_arrays(records, "val")
    z42, z43 = _logits(runs["s42"], x), _logits(runs["s43"], x)
    assert np.abs(z42 - z43).max() > 1e-3  # not vacuous
    np.testing.assert_allclose(_logits(runs["ens"], x), (z42 + z43) / 2, rtol=1e-5, atol=1e-6)
    summary = json.loads((runs["ens"].parent / "live" / "metrics.json").read_text())
    assert summary["ensemble"]["members"] == 2
