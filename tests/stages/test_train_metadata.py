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

from deploy import tiny_tfrecords
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
    params["train"] = {
        "cache_variants": 2,
        "unfreeze_blocks": 6,
        "head_epochs": 2,
        "finetune_epochs": 0,
        "lr": 0.05,
        "batch_size": 16,
        "metadata_dropout": 0.5,
    }
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


def test_evaluate_reports_with_metadata_and_with_every_field_unknown(trained, tmp_path) -> None:
    import pandas as pd

    model, records, prm = trained
    r = tmp_path / "data_reports"
    r.mkdir()
    pd.DataFrame([{"split": "test", "condition": "mel", "age_group": "30-59", "count": 1}]).to_csv(
        r / "split_summary.csv", index=False
    )
    sizes = {"sizes": {"test": 9}, "cross_split_exact_pairs": 0, "method": "policy=group"}
    (r / "leakage.json").write_text(json.dumps({"before": sizes, "after": sizes}))
    (r / "index_summary.json").write_text(json.dumps({"by_source": {"s": 36}, "rejected": 0}))
    out = tmp_path / "eval"
    argv = ["evaluate", "--params", str(prm), "--model", str(model), "--tfrecords", str(records)]
    argv += ["--split-summary", str(r / "split_summary.csv"), "--leakage", str(r / "leakage.json")]
    argv += ["--index-summary", str(r / "index_summary.json")]
    argv += ["--calibration", str(out / "calibration.json"), "--out", str(out / "reports")]
    argv += ["--card", str(out / "model_card.md"), "--live", str(out / "live")]
    argv += ["--ood", str(out / "ood.json"), "--card-json", str(out / "model_card.json")]
    assert main(argv) == 0
    known = json.loads((out / "reports" / "report_test.json").read_text())
    unknown = json.loads((out / "reports" / "report_test_metadata_unknown.json").read_text())
    assert known["n"] == unknown["n"] == 9
    assert "test_metadata_unknown" in (out / "model_card.md").read_text()
    p_known = pd.read_csv(out / "reports" / "predictions_test.csv")
    p_unknown = pd.read_csv(out / "reports" / "predictions_test_metadata_unknown.csv")
    assert list(p_known["image_id"]) == list(p_unknown["image_id"])
    live = json.loads((out / "live" / "metrics.json").read_text())
    assert "test_metadata_unknown" in live
