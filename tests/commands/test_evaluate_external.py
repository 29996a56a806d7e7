"""`dermai evaluate-external` end to end: both label formats, bad images, unmappable labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

import tinymodel
from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]
N = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, list[str], list[str]]:
    tmp = tmp_path_factory.mktemp("ext")
    model = tinymodel.save(tinymodel.build(CLASSES), tmp / "model", CLASSES)
    images = tmp / "images"
    names, labels = [], []
    for i in range(N):
        sub = images / ("part1" if i % 2 else "part2")
        sub.mkdir(parents=True, exist_ok=True)
        tinymodel.tinted(100 + i).save(sub / f"ISIC_{i:04d}.jpg")
        names.append(f"ISIC_{i:04d}")
        labels.append(CLASSES[i % 3])
    (images / "part1" / "ISIC_9000.jpg").write_bytes(b"corrupt")
    return model, images, [*names, "ISIC_9000", "ISIC_9999"], [*labels, "mel", "nv"]


def run(model: Path, images: Path, labels: Path, out: Path) -> int:
    return main(
        [
            "evaluate-external",
            "--params",
            str(out.parent / "none.yaml"),
            "--model",
            str(model),
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--out",
            str(out),
        ]
    )


def check_outputs(out: Path, labels: list[str]) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())["external"]
    assert metrics["n"] == N and metrics["skipped"] == 2
    preds = pd.read_csv(out / "predictions_external.csv")
    assert len(preds) == N
    assert preds["label"].tolist() == labels[:N]
    assert metrics["accuracy"] == pytest.approx(
        accuracy_score(preds["label"], preds["predicted"]), abs=1e-6
    )
    for k in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert metrics["ci"][k]["low"] <= metrics[k] <= metrics["ci"][k]["high"]
    assert set(metrics["per_class"]) == set(CLASSES)
    # Long-format plot data (one file per chart, the class in a field; see core/plotdata.py).
    plots = out / "plots" / "custom" / "external"
    for kind in ("confusion", "roc", "precision_recall", "reliability"):
        assert (plots / f"{kind}.json").is_file(), kind
    for kind in ("roc", "precision_recall"):
        rows = json.loads((plots / f"{kind}.json").read_text())
        rows = rows[kind] if isinstance(rows, dict) else rows
        assert {r["class"] for r in rows} >= set(CLASSES), kind
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(Path(n).stem for n in skipped["image"]) == ["ISIC_9000", "ISIC_9999"]
    page = (out / "errors" / "index.html").read_text()
    assert "NOT a medical diagnostic tool" in page and "Grad-CAM" in page
    assert len(list((out / "errors").glob("*.png"))) >= 1
    return metrics


def test_isic_one_hot_and_plain_give_the_same_result(setup, tmp_path, capsys):
    model, images, names, labels = setup
    onehot = pd.DataFrame({"image": names})
    for c in ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]:  # model lacks the last four
        onehot[c] = [1.0 if lab == c.lower() else 0.0 for lab in labels]
    onehot.to_csv(tmp_path / "gt.csv", index=False)
    assert run(model, images, tmp_path / "gt.csv", tmp_path / "a") == 0
    err = capsys.readouterr().err
    assert "skipped ISIC_9000: not an image" in err and "skipped ISIC_9999: file not found" in err
    m1 = check_outputs(tmp_path / "a", labels)

    plain = pd.DataFrame(
        {
            "image": [n + ".jpg" if i % 2 else n for i, n in enumerate(names)],
            "label": [lab.upper() if i % 3 else lab for i, lab in enumerate(labels)],
        }
    )
    plain.to_csv(tmp_path / "plain.csv", index=False)
    assert run(model, images, tmp_path / "plain.csv", tmp_path / "b") == 0
    m2 = check_outputs(tmp_path / "b", labels)
    assert m1 == m2
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (
        tmp_path / "b" / "metrics.json"
    ).read_bytes()


def test_unmappable_label_is_a_one_line_error(setup, tmp_path, capsys):
    model, images, names, _ = setup
    pd.DataFrame({"image": names[:3], "label": ["mel", "SCC", "nv"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    assert run(model, images, tmp_path / "bad.csv", tmp_path / "o") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("dermai evaluate-external: error: labels CSV row 3")
    assert "'SCC'" in err[0] and not (tmp_path / "o" / "metrics.json").exists()


def test_no_readable_image_is_an_error(setup, tmp_path, capsys):
    model, images, _, _ = setup
    pd.DataFrame({"image": ["ISIC_9000"], "label": ["mel"]}).to_csv(tmp_path / "l.csv", index=False)
    assert run(model, images, tmp_path / "l.csv", tmp_path / "o") == 1
    assert "none of the 1 labelled images" in capsys.readouterr().err
    assert np.array_equal(pd.read_csv(tmp_path / "o" / "skipped.csv")["image"], ["ISIC_9000"])


def test_repeated_ids_collapse_conflicts_fail_and_unlabelled_images_are_listed(
    setup, tmp_path, capsys, caplog
):
    """An id listed twice used to be counted twice (n = 22 for 20 images, no warning)."""
    model, images, names, labels = setup
    base = pd.DataFrame({"image": names[:N], "label": labels[:N]})
    # ISIC_0000 and ISIC_0001 repeated identically: counted once each, with a warning.
    twice = pd.concat(
        [base, pd.DataFrame({"image": ["ISIC_0000", "ISIC_0001"], "label": [labels[0], labels[1]]})]
    )
    twice.to_csv(tmp_path / "twice.csv", index=False)
    assert run(model, images, tmp_path / "twice.csv", tmp_path / "a") == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())["external"]
    assert metrics["n"] == N and metrics["collapsed_repeats"] == 2
    assert "2 image(s) listed more than once (by one name or several) with the same label" in (
        caplog.text
    )
    # Images in the folder that no row names are listed (the corrupt one is not in this CSV).
    assert pd.read_csv(tmp_path / "a" / "unlabelled.csv")["image"].tolist() == [
        "part1/ISIC_9000.jpg"
    ]

    other = {"bcc": "mel", "mel": "nv", "nv": "bcc"}
    clash = pd.concat(
        [
            base,
            pd.DataFrame(
                {"image": ["ISIC_0003", "ISIC_0001"], "label": [other[labels[3]], other[labels[1]]]}
            ),
        ]
    )
    clash.to_csv(tmp_path / "clash.csv", index=False)
    capsys.readouterr()
    assert run(model, images, tmp_path / "clash.csv", tmp_path / "b") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "dermai evaluate-external: error: labels CSV clash.csv: 2 id(s) "
        "listed with different labels: ISIC_0001: "
    )
    assert "ISIC_0003: " in err[-1] and not (tmp_path / "b" / "metrics.json").exists()


def test_exclude_duplicates_of_training_index(setup, tmp_path, caplog):
    """External images that copy (bytes) or re-encode (pixels) a training image are dropped
    and listed; the score is computed on the rest only."""
    import logging

    from PIL import Image

    caplog.set_level(logging.INFO)
    model, images, names, labels = setup
    raw = tmp_path / "raw"
    for k in range(6):  # unrelated training images
        dst = raw / "s" / CLASSES[k % 3] / "30-59" / f"t{k}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tinymodel.tinted(900 + k).save(dst)
    (raw / "s/nv/30-59/copy.jpg").write_bytes((images / "part1/ISIC_0003.jpg").read_bytes())
    with Image.open(images / "part1/ISIC_0005.jpg") as im:  # same pixels, other bytes
        im.save(raw / "s/mel/30-59/reenc.png")
    assert (
        main(
            [
                "index",
                "--params",
                "params.yaml",
                "--raw",
                str(raw),
                "--layout",
                "folders",
                "--workers",
                "1",
                "--out",
                str(tmp_path / "index.csv"),
                "--rejects",
                str(tmp_path / "rejects.csv"),
                "--summary",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    pd.DataFrame({"image": names, "label": labels}).to_csv(tmp_path / "gt.csv", index=False)
    out = tmp_path / "clean"
    assert (
        main(
            [
                "evaluate-external",
                "--params",
                "params.yaml",
                "--model",
                str(model),
                "--images",
                str(images),
                "--labels",
                str(tmp_path / "gt.csv"),
                "--out",
                str(out),
                "--exclude-duplicates-of",
                str(tmp_path / "index.csv"),
            ]
        )
        == 0
    )
    listed = pd.read_csv(out / "excluded_duplicates.csv")
    assert sorted(zip(listed["image"], listed["kind"], listed["train_image_id"], strict=True)) == [
        ("ISIC_0003", "exact", "copy"),
        ("ISIC_0005", "perceptual", "reenc"),
    ]
    assert (listed["distance"] == 0).all() and (listed["verify_distance"] == 0).all()
    assert "excluded ISIC_0003: exact duplicate of training image(s) copy" in caplog.text
    assert "excluded 2 of 26 external images" in caplog.text
    metrics = json.loads((out / "metrics.json").read_text())["external"]
    assert metrics["n"] == N - 2 and metrics["excluded_duplicates"] == 2
    assert metrics["skipped"] == 2
    preds = pd.read_csv(out / "predictions_external.csv")
    assert len(preds) == N - 2
    assert not {"ISIC_0003", "ISIC_0005"} & {Path(str(i)).stem for i in preds.iloc[:, 0]}


def test_the_models_guard_is_applied_and_its_refusals_listed(setup, tmp_path):
    """A PPCA guard on the frozen trunk beside the model: every image gets its score and
    decision in ood.csv (as `core.ood` computes them), the summary counts the refusals, and
    the metrics still cover every image."""
    import shutil

    from dermai.core import ood
    from dermai.io.images import read
    from dermai.models import archive
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference

    model, images, names, labels = setup
    folder = tmp_path / "model"
    shutil.copytree(model.parent, folder)
    pred = bundle_mod.load(folder / model.name)
    ids = names[:N]
    x = np.stack([pred.prepare(tinymodel.tinted(100 + i)) for i in range(N)])
    km = archive.load_keras(folder / model.name)
    trunk = np.asarray(inference.trunk_model(km)(x))
    g = ood.fit(
        "ppca",
        train_logits=pred.logits_fn(x),
        train_features=trunk,
        train_labels=np.zeros(N),
        val_logits=pred.logits_fn(x),
        val_features=trunk,
        n_components=3,
        space="trunk",
    )
    g.threshold = float(np.median(g.score(None, trunk)))  # both decisions occur
    (folder / "ood.json").write_text(json.dumps(g.to_dict()))
    pd.DataFrame({"image": names, "label": labels}).to_csv(tmp_path / "l.csv", index=False)
    assert run(folder / model.name, images, tmp_path / "l.csv", tmp_path / "out") == 0
    got = pd.read_csv(tmp_path / "out" / "ood.csv")
    assert got["image"].tolist() == ids
    # scored as the command reads them: from the JPEG files
    rd = np.stack([pred.prepare(read(next(images.rglob(f"{n}.jpg")))) for n in ids])
    want = g.score(pred.logits_fn(rd), np.asarray(inference.trunk_model(km)(rd)))
    np.testing.assert_allclose(got["score"], want, rtol=1e-4, atol=1e-3)
    assert got["in_distribution"].tolist() == (want >= g.threshold).tolist()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["external"]
    assert metrics["n"] == N and 0 < metrics["ood_refused"] < N
    assert metrics["ood_refused"] == int((~got["in_distribution"]).sum())
