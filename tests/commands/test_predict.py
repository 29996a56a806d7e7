"""`dermai predict` end to end on a tiny model: JSON, CSV, recursion, bad files, EXIF, T."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tinymodel
from dermai import DISCLAIMER
from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    path = tinymodel.save(tinymodel.build(CLASSES), folder, CLASSES)
    (folder / "calibration.json").write_text(json.dumps({"temperature": 2.0}))
    return path


def test_one_image_prints_calibrated_json_with_disclaimer(model, tmp_path, capsys):
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference

    img = tmp_path / "one.png"
    tinymodel.tinted(3).save(img)
    assert main(["predict", "--model", str(model), str(img)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["disclaimer"] == DISCLAIMER and out["temperature"] == 2.0
    assert out["image"] == str(img)
    assert set(out["probabilities"]) == set(CLASSES)
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert [t["class"] for t in out["top3"]] == sorted(
        CLASSES, key=lambda c: -out["probabilities"][c]
    )
    assert out["top1"] == out["top3"][0]
    pred = bundle_mod.load(model)
    x = pred.prepare(tinymodel.tinted(3))[None]
    expected = inference.softmax(pred.logits_fn(x), 2.0)[0]  # calibrated with T from the file
    assert [out["probabilities"][c] for c in CLASSES] == pytest.approx(expected.tolist(), abs=1e-5)


def test_folders_recursive_bad_files_reported_csv(model, tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, rel in enumerate(["a.jpg", "sub/b.png", "sub/deeper/c.jpeg"]):
        tinymodel.tinted(i).save(root / rel)
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "readme.txt").write_text("not an image, not picked up")
    out = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                str(root),
                str(tmp_path / "gone.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.jpg" in err and "gone.png" in err
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 5
    assert list(df.columns[:9]) == [
        "image",
        "error",
        "in_distribution",
        "top1",
        "top1_probability",
        "top2",
        "top2_probability",
        "top3",
        "top3_probability",
    ]
    bad = df[df["error"] != ""]
    assert sorted(Path(p).name for p in bad["image"]) == ["broken.jpg", "gone.png"]
    good = df[df["error"] == ""]
    assert set(good["top1"]) <= set(CLASSES)
    probs = good[[f"p_{c}" for c in CLASSES]].astype(float).to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_exif_orientation_is_applied(model, tmp_path, capsys):
    upright = tinymodel.tinted(5, w=48, h=36)
    stored = upright.rotate(90, expand=True)  # pixels on disk are turned 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display" undoes it
    upright.save(tmp_path / "upright.png")
    stored.save(tmp_path / "stored.png", exif=exif)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(model), str(tmp_path), "--out", str(out)]) == 0
    df = pd.read_csv(out).set_index("image")
    cols = [f"p_{c}" for c in CLASSES]
    a = df.loc[str(tmp_path / "upright.png"), cols].to_numpy(float)
    b = df.loc[str(tmp_path / "stored.png"), cols].to_numpy(float)
    assert np.allclose(a, b, atol=1e-5)


def test_nothing_found_is_an_error(model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--model", str(model), str(tmp_path / "empty")]) == 1
    assert "no image files" in capsys.readouterr().err


def test_all_images_failed_exits_nonzero_after_reporting_them(model, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "p.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                str(tmp_path / "broken.jpg"),
                str(tmp_path / "gone.png"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "predicted nothing: all 2 image(s) failed" in capsys.readouterr().err
    assert len(pd.read_csv(out)) == 2  # the per-image reasons are still written


def test_model_defaults_to_the_pipeline_path_in_dvc_yaml(model, tmp_path, capsys, monkeypatch):
    img = tmp_path / "one.png"
    tinymodel.tinted(3).save(img)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: dermai train --gate x --model m/model.keras --live y\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(img)]) == 1
    assert (
        "m/model.keras not found (the train stage's --model in dvc.yaml)" in capsys.readouterr().err
    )
    (tmp_path / "m").mkdir()
    for f in model.parent.iterdir():
        (tmp_path / "m" / f.name).write_bytes(f.read_bytes())
    assert main(["predict", str(img)]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "model.keras"


def test_the_ood_guard_adds_in_distribution_and_withholds_probabilities(model, tmp_path, capsys):
    import shutil

    from dermai.core.ood import Guard

    folder = tmp_path / "m"
    folder.mkdir()
    for f in model.parent.iterdir():
        shutil.copy(f, folder / f.name)
    (folder / "model_card.json").write_text(
        json.dumps({"data": {"image_kind": "dermoscopic images"}})
    )
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        tinymodel.tinted(i).save(imgs / f"{i}.png")
    for threshold, inside in ((1e9, False), (-1e9, True)):
        (folder / "ood.json").write_text(
            json.dumps(Guard("energy", threshold, 0.95, "logits").to_dict())
        )
        assert main(["predict", "--model", str(folder / model.name), str(imgs)]) == 0
        out = json.loads(capsys.readouterr().out)["predictions"]
        assert [p["in_distribution"] for p in out] == [inside, inside]
        if inside:
            assert all("probabilities" in p for p in out)
        else:
            assert all("probabilities" not in p and "top1" not in p for p in out)
            assert out[0]["message"].startswith(
                "This does not look like the images this model was trained on (dermoscopic images)"
            )
        csv = tmp_path / "p.csv"
        assert (
            main(["predict", "--model", str(folder / model.name), str(imgs), "--out", str(csv)])
            == 0
        )
        df = pd.read_csv(csv)
        assert df["in_distribution"].tolist() == [inside, inside]
        assert df["p_mel"].notna().all() == inside


def test_predict_applies_the_tta_named_in_the_calibration(tmp_path, capsys):
    from dermai.core import tta
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference

    path = tinymodel.save(tinymodel.build(CLASSES), tmp_path / "m", CLASSES)
    (path.parent / "calibration.json").write_text(json.dumps({"temperature": 2.0, "tta": "flips"}))
    img = tmp_path / "one.png"
    tinymodel.tinted(5).save(img)
    assert main(["predict", "--model", str(path), str(img)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tta"] == "flips" and out["temperature"] == 2.0
    pred = bundle_mod.load(path)
    x = pred.prepare(tinymodel.tinted(5))[None]
    views = [np.ascontiguousarray(tta.apply(v, x)) for v in tta.FLIPS]
    p = np.mean([inference.softmax(pred.logits_fn(v)) for v in views], axis=0).astype(np.float64)
    q = p ** (1 / 2.0)  # temperature 2 on the log of the mean
    expected = (q / q.sum(1, keepdims=True))[0]
    got = [out["probabilities"][c] for c in CLASSES]
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    plain = inference.softmax(pred.logits_fn(x), 2.0)[0]
    assert not np.allclose(got, plain, atol=1e-4)  # the un-augmented answer differs


def test_a_trunk_guard_scores_the_frozen_trunk_of_each_image(model, tmp_path, capsys):
    """The default guard kind (PPCA on the pooled frozen trunk) through `dermai predict`: each
    image's decision is core.ood's on `runtime.inference.trunk_model`'s features."""
    import shutil

    from dermai.core import ood
    from dermai.models import archive
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference

    folder = tmp_path / "m"
    shutil.copytree(model.parent, folder)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(6):
        tinymodel.tinted(i).save(imgs / f"{i}.png")
    pred = bundle_mod.load(folder / model.name)
    x = np.stack([pred.prepare(tinymodel.tinted(i)) for i in range(6)])
    trunk = np.asarray(inference.trunk_model(archive.load_keras(folder / model.name))(x))
    z = pred.logits_fn(x)
    g = ood.fit(
        "ppca",
        train_logits=z,
        train_features=trunk,
        train_labels=np.zeros(6),
        val_logits=z,
        val_features=trunk,
        n_components=2,
        space="trunk",
    )
    scores = g.score(z, trunk)
    g.threshold = float(np.median(scores))
    (folder / "ood.json").write_text(json.dumps(g.to_dict()))
    assert main(["predict", "--model", str(folder / model.name), str(imgs)]) == 0
    out = json.loads(capsys.readouterr().out)["predictions"]
    got = {Path(p["image"]).name: p["in_distribution"] for p in out}
    assert got == {f"{i}.png": bool(scores[i] >= g.threshold) for i in range(6)}
    assert 0 < sum(got.values()) < 6
