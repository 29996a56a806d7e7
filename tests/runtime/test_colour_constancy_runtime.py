"""A model trained with colour constancy is applied with it by every Python runtime.

train_params.json (.keras) and the .tflite metadata carry `model.colour_constancy`; `dermai
predict` (and so serve and evaluate-external, which share `Predictor.prepare`) corrects new
images with it: a colour-cast photo then gets the probabilities of the uncast one. Without the
setting the same cast moves them a lot, so the check is not vacuous. Default exports name nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinymodel
from deploy import lesion
from dermai.cli import main
from dermai.core.preprocess import illuminant

CLASSES = ["bcc", "mel", "nv"]
P = 6.0


def _with_colour(folder: Path, p: float | str) -> Path:
    """The tiny model saved in `folder` with train_params.json naming colour constancy `p`."""
    path = tinymodel.save(tinymodel.build(CLASSES), folder, CLASSES)
    f = folder / "train_params.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "colour_constancy": p}))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return {
        "on": _with_colour(tmp_path_factory.mktemp("cc_on"), P),
        "off": _with_colour(tmp_path_factory.mktemp("cc_off"), "none"),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """A lesion photo at the model's size and the same photo under a reddish-yellow light
    (per-channel gains scaled to keep the illuminant's norm: a cast, not a brightness change)."""
    tmp = tmp_path_factory.mktemp("photos")
    base = np.asarray(lesion("mel", seed=3, height=tinymodel.H, width=tinymodel.W))
    base = (base.astype(float) * 0.8 + 20).astype(np.uint8)  # headroom: the cast never clips
    gains = np.array([1.25, 1.0, 0.7])
    e = illuminant(base, P)
    gains *= np.linalg.norm(e) / np.linalg.norm(gains * e)
    cast = np.clip(np.floor(base * gains + 0.5), 0, 255).astype(np.uint8)
    assert (base.astype(float) * gains).max() < 255
    paths = tmp / "plain.png", tmp / "cast.png"
    Image.fromarray(base).save(paths[0])
    Image.fromarray(cast).save(paths[1])
    return paths


def predict(model: Path, image: Path, capsys) -> np.ndarray:
    assert main(["predict", "--model", str(model), str(image)]) == 0
    out = json.loads(capsys.readouterr().out)
    return np.array([out["probabilities"][c] for c in CLASSES])


def test_predict_on_a_cast_photo_gives_the_uncast_probabilities_when_on(models, photos, capsys):
    plain, cast = photos
    on = np.abs(predict(models["on"], cast, capsys) - predict(models["on"], plain, capsys))
    off = np.abs(predict(models["off"], cast, capsys) - predict(models["off"], plain, capsys))
    assert on.max() <= 0.01, on
    assert off.max() >= 0.05 and off.max() >= 10 * on.max(), (on, off)


def test_the_predictor_reads_the_setting_and_corrects_the_pixels(models, photos):
    from dermai.core.preprocess import fit, shades_of_grey
    from dermai.runtime import bundle as bundle_mod

    pred = bundle_mod.load(models["on"])
    assert pred.colour_constancy == P
    img = Image.open(photos[1])
    want = shades_of_grey(np.asarray(fit(img, tinymodel.H, tinymodel.W)), P)
    assert np.array_equal(pred.prepare(img), want.astype(np.float32))
    plain = bundle_mod.load(models["off"])
    assert plain.colour_constancy == "none"
    assert np.array_equal(plain.prepare(img), np.asarray(img, dtype=np.float32))


def test_a_model_file_with_a_bad_setting_is_refused(tmp_path):
    from dermai.errors import DermaiError
    from dermai.runtime import bundle as bundle_mod

    with pytest.raises(DermaiError, match="colour_constancy"):
        bundle_mod.load(_with_colour(tmp_path, 0.5))


def test_the_tflite_carries_it_and_python_litert_applies_it(models, photos, tmp_path, capsys):
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime.tflite import read_metadata

    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = _export(models["on"], tmp_path / "on", P)
    off = _export(models["off"], tmp_path / "off", "none")
    cc = read_metadata(on)["input"]["colour_constancy"]
    assert cc["method"] == "shades_of_grey" and cc["p"] == P
    assert "colour_constancy" not in read_metadata(off)["input"]  # the default document
    assert bundle_mod.load(on).colour_constancy == P
    assert bundle_mod.load(off).colour_constancy == "none"
    plain, cast = photos
    diff = np.abs(predict(on, cast, capsys) - predict(on, plain, capsys))
    assert diff.max() <= 0.01, diff


def _export(keras_path: Path, dest: Path, p: float | str) -> Path:
    """float32 .tflite of `keras_path` as the export stage makes it, colour constancy `p`."""
    import keras

    from dermai.runtime.convert import export_bytes

    model = keras.saving.load_model(keras_path, compile=False)
    blob = export_bytes(model, CLASSES, 1.0, None, ("float32",), colour_constancy=p)["float32"]
    out = dest / "model_float32.tflite"
    out.write_bytes(blob)
    return out


def test_serve_engine_corrects_as_predict_does(models, photos):
    from dermai.web.engine import build_engine

    engine = build_engine(models["on"], None)
    assert engine.info()["colour_constancy"] == P
    plain, cast = (engine.analyse(p.read_bytes())["predictions"] for p in photos)
    got = {r["code"]: r["probability"] for r in cast}
    for r in plain:
        assert got[r["code"]] == pytest.approx(r["probability"], abs=0.01)


def test_evaluate_external_corrects_as_predict_does(models, photos, tmp_path):
    """Each photo under 3 labels' names, plain and cast: the per-image probabilities agree."""
    import pandas as pd

    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for k, c in enumerate(CLASSES):
        for kind, src in zip(("plain", "cast"), photos, strict=True):
            name = f"{kind}_{k}.png"
            (images / name).write_bytes(src.read_bytes())
            rows.append({"image": name, "label": c})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "out"
    args = ["evaluate-external", "--params", str(tmp_path / "none.yaml")]
    args += ["--model", str(models["on"]), "--images", str(images)]
    args += ["--labels", str(tmp_path / "labels.csv"), "--out", str(out)]
    assert main(args) == 0
    preds = pd.read_csv(out / "predictions_external.csv")
    probs = [f"p_{c}" for c in CLASSES]
    kind = preds["image_id"].astype(str).str.contains("cast")
    a, b = preds[~kind][probs].to_numpy(), preds[kind][probs].to_numpy()
    assert a.shape == b.shape == (3, len(CLASSES))
    assert np.abs(a - b).max() <= 0.01
