"""`model.metadata` end to end on tiny TFRecords that carry age, sex and site (deploy.add_metadata):
train fits the encoder on the train split only and records it, the model takes the encoded
vector as a second input, and the model answers with all, some and none of the fields known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorflow")

from deploy import TINY_TRAIN, tiny_tfrecords
from dermai.cli import main
from dermai.core import metadata

pytestmark = pytest.mark.timeout(900)

FIELDS = ["age", "sex", "site"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model.keras, tfrecords, params.yaml): one plain copy, phase 1 only (as
    test_train_ensemble), metadata on with train.metadata_dropout 0.5."""
    tmp = tmp_path_factory.mktemp("metadata")
    records, prm = tiny_tfrecords(tmp, metadata=True)
    params = yaml.safe_load(prm.read_text())
    params["model"]["metadata"] = FIELDS
    params["train"] = {**TINY_TRAIN, "cache_variants": 2, "head_epochs": 2, "metadata_dropout": 0.5}
    prm.write_text(yaml.safe_dump(params))
    cache = tmp / "features"
    argv = ["--params", str(prm), "--tfrecords", str(records), "--pretrained", "unused.h5"]
    assert main(["features", *argv, "--out", str(cache)]) == 0
    model = tmp / "model" / "model.keras"
    model.parent.mkdir()
    argv += ["--features", str(cache), "--model", str(model)]
    argv += ["--train-params", str(model.parent / "train_params.json")]
    assert main(["train", *argv, "--live", str(tmp / "live")]) == 0
    return model, records, prm


def test_the_encoder_is_fitted_on_train_and_recorded(trained) -> None:
    model, records, _ = trained
    assert json.loads((records / "meta.json").read_text())["metadata_fields"] == FIELDS
    doc = json.loads((model.parent / "train_params.json").read_text())["metadata"]
    assert doc["fields"] == FIELDS
    # "MALE" and "male" are one value; blanks and placeholders are the unknown slot, and the
    # test split's "scalp" is not a training value.
    assert doc["vocab"] == {"sex": ["female", "male"], "site": ["arm", "back", "face"]}
    assert doc["width"] == 2 + 3 + 4
    enc = metadata.Encoder.from_dict(doc)
    assert enc.to_dict() == doc


def test_the_model_answers_with_all_some_and_none_known(trained) -> None:
    import keras

    model_path, _, _ = trained
    model = keras.saving.load_model(model_path, compile=False)
    assert [tuple(i.shape[1:]) for i in model.inputs] == [(24, 32, 3), (9,)]
    enc = metadata.Encoder.from_dict(
        json.loads((model_path.parent / "train_params.json").read_text())["metadata"]
    )
    x = np.random.default_rng(0).uniform(0, 255, (3, 24, 32, 3)).astype(np.float32)
    answers = [
        {"age": 45, "sex": "female", "site": "back"},
        {"site": "face"},
        {},
    ]
    m = np.stack([enc.encode(a) for a in answers])
    p = np.asarray(model([x, m], training=False))
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    p_unknown = np.asarray(model([x, np.tile(enc.unknown(), (3, 1))], training=False))
    np.testing.assert_allclose(p[2], p_unknown[2], rtol=1e-6)  # none known = unknown
    assert not np.allclose(p[0], p_unknown[0])  # the metadata reaches the logits


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trained`'s evaluate outputs (reports folder); calibration.json, ood.json and
    model_card.json beside the model, where export, predict and serve find them."""
    import pandas as pd

    model, records, prm = trained
    tmp = tmp_path_factory.mktemp("evaluated")
    r = tmp / "data_reports"
    r.mkdir()
    pd.DataFrame([{"split": "test", "condition": "mel", "age_group": "30-59", "count": 1}]).to_csv(
        r / "split_summary.csv", index=False
    )
    sizes = {"sizes": {"test": 9}, "cross_split_exact_pairs": 0, "method": "policy=group"}
    (r / "leakage.json").write_text(json.dumps({"before": sizes, "after": sizes}))
    (r / "index_summary.json").write_text(json.dumps({"by_source": {"s": 36}, "rejected": 0}))
    argv = ["evaluate", "--params", str(prm), "--model", str(model), "--tfrecords", str(records)]
    argv += ["--split-summary", str(r / "split_summary.csv"), "--leakage", str(r / "leakage.json")]
    argv += ["--index-summary", str(r / "index_summary.json"), "--out", str(tmp / "reports")]
    argv += ["--card", str(tmp / "model_card.md"), "--live", str(tmp / "live")]
    assert main(argv) == 0
    return tmp


@pytest.fixture(scope="module")
def exported(trained, evaluated) -> dict[str, Path]:
    """The export stage's float32 and int8 models of `trained` (beside it) and its report."""
    model, records, prm = trained
    d = model.parent
    argv = ["export", "--params", str(prm), "--model", str(model), "--tfrecords", str(records)]
    argv += ["--float-out", str(d / "model_float32.tflite")]
    argv += ["--int8-out", str(d / "model_int8.tflite"), "--metrics", str(d / "export.json")]
    assert main(argv) == 0
    return {
        "float32": d / "model_float32.tflite",
        "int8": d / "model_int8.tflite",
        "report": d / "export.json",
    }


def test_evaluate_reports_with_metadata_and_with_every_field_unknown(evaluated) -> None:
    import pandas as pd

    out = evaluated
    known = json.loads((out / "reports" / "report_test.json").read_text())
    unknown = json.loads((out / "reports" / "report_test_metadata_unknown.json").read_text())
    assert known["n"] == unknown["n"] == 9
    assert "test_metadata_unknown" in (out / "model_card.md").read_text()
    p_known = pd.read_csv(out / "reports" / "predictions_test.csv")
    p_unknown = pd.read_csv(out / "reports" / "predictions_test_metadata_unknown.csv")
    assert list(p_known["image_id"]) == list(p_unknown["image_id"])
    live = json.loads((out / "live" / "metrics.json").read_text())
    assert "test_metadata_unknown" in live


ANSWERS = {
    "all": {"age": "45", "sex": "female", "site": "back"},
    "some": {"site": "face"},
    "none": {},
}


def test_the_tflite_models_take_the_metadata_as_a_second_input(trained, exported) -> None:
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime.tflite import TfliteModel

    model, _, _ = trained
    report = json.loads(exported["report"].read_text())
    assert report["float32"]["agreement"] == 1.0
    keras_b = bundle_mod.load(model)
    x = np.random.default_rng(1).uniform(0, 255, (3, 24, 32, 3)).astype(np.float32)
    m = np.stack([keras_b.metadata.encode(a) for a in ANSWERS.values()])
    ref = keras_b.analyse(x, m).logits
    for kind, tol in (("float32", 1e-3), ("int8", None)):
        lite = TfliteModel(exported[kind])
        assert lite.meta["metadata"] == keras_b.metadata.to_dict()
        assert lite.meta["input"]["metadata"]["width"] == 9
        b = bundle_mod.load(exported[kind])
        assert b.metadata == keras_b.metadata
        got = b.analyse(x, m).logits
        if tol is not None:
            np.testing.assert_allclose(got, ref, atol=tol)
        else:  # int8: the same decisions on these rows
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 2 / 3
        # none known: the same as asking with every field unknown
        np.testing.assert_allclose(b.analyse(x).logits, b.analyse(x, m[[2, 2, 2]]).logits)


def test_predict_with_all_some_and_none_known(trained, evaluated, exported, tmp_path, capsys):
    from deploy import lesion

    model, _, _ = trained
    img = tmp_path / "a.png"
    lesion("mel", seed=3, height=36, width=48).save(img)
    flags = {"all": ["--age", "45", "--sex", "female", "--site", "back"], "some": [], "none": []}
    flags["some"] = ["--site", "face", "--meta", "itch=true"]
    for m in (model, exported["int8"]):
        outs = {}
        for name, extra in flags.items():
            assert main(["predict", "--model", str(m), str(img), *extra]) == 0
            outs[name] = json.loads(capsys.readouterr().out)
        assert outs["all"]["metadata"]["used"] == ANSWERS["all"]
        assert outs["some"]["metadata"] == {"used": {"site": "face"}, "not_used": {"itch": "true"}}
        assert outs["none"]["metadata"] == {"used": {}, "not_used": {}}
        assert outs["all"]["metadata_fields"] == FIELDS
        assert outs["all"]["probabilities"] != outs["none"]["probabilities"]
    # a CSV beside the images: each image's own answers over the flags
    other = tmp_path / "b.png"
    lesion("nv", seed=4, height=36, width=48).save(other)
    (tmp_path / "meta.csv").write_text("image,age,sex\na.png,45,female\nb.png,,\n")
    argv = ["predict", "--model", str(model), str(img), str(other), "--site", "back"]
    assert main([*argv, "--metadata-csv", str(tmp_path / "meta.csv")]) == 0
    got = {
        Path(p["image"]).name: p["metadata"]
        for p in json.loads(capsys.readouterr().out)["predictions"]
    }
    assert got["a.png"]["used"] == ANSWERS["all"]
    assert got["b.png"]["used"] == {"site": "back"}


def test_serve_takes_optional_metadata_fields(trained, evaluated, exported) -> None:
    import asyncio
    import io

    import httpx

    from deploy import lesion
    from dermai.web.app import create_app
    from dermai.web.engine import build_engine

    model, _, _ = trained
    engine = build_engine(exported["float32"], model, threads=1)
    app = create_app(engine, workers=1)

    def call(method: str, url: str, **kw: object) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    page = call("GET", "/").text
    assert (
        '<select id="meta-sex" data-field="sex"><option value="" selected>unknown</option>' in page
    )
    assert '<option value="face">face</option>' in page and 'id="meta-age"' in page
    info = call("GET", "/api/info").json()
    assert info["metadata"] == {
        "fields": FIELDS,
        "vocab": {"sex": ["female", "male"], "site": ["arm", "back", "face"]},
    }
    buf = io.BytesIO()
    img = lesion("mel", seed=5, height=48, width=64)
    img.save(buf, "PNG")
    files = {"files": {"file": ("a.png", buf.getvalue(), "image/png")}}
    b = engine.bundle
    x = b.prepare(img)[None]
    for name, answers in ANSWERS.items():
        query = "&".join(f"{k}={v}" for k, v in answers.items())
        r = call("POST", "/api/predict" + (f"?{query}" if query else ""), **files)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["metadata"]["used"] == answers, name
        expected = b.analyse(x, b.encode_answers(answers)[0][None]).probabilities[0]
        got = {p["code"]: p["probability"] for p in body["predictions"]}
        for code, prob in got.items():
            assert prob == pytest.approx(float(expected[b.classes.index(code)]), abs=1e-5)
