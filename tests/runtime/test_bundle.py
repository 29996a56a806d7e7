"""The one place that finds a model's train_params.json and calibration.json."""

from __future__ import annotations

import json

import pytest

from dermai.errors import DermaiError
from dermai.runtime import loader


def _params(path, classes=("a", "b")):
    path.write_text(json.dumps({"classes": list(classes), "input_shape": [8, 8, 3]}))
    return path


def test_train_params_default_to_beside_the_model_and_explicit_wins(tmp_path):
    model = tmp_path / "m" / "model.keras"
    model.parent.mkdir()
    _params(model.parent / "train_params.json", ("beside",))
    other = _params(tmp_path / "elsewhere.json", ("explicit",))
    assert loader.read_train_params(model)["classes"] == ["beside"]
    assert loader.read_train_params(model, other)["classes"] == ["explicit"]


def test_missing_or_incomplete_train_params_is_a_one_line_error(tmp_path):
    with pytest.raises(DermaiError, match=r"train_params\.json not found") as exc:
        loader.read_train_params(tmp_path / "model.keras")
    assert "\n" not in str(exc.value)
    (tmp_path / "train_params.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(DermaiError, match="lacks classes or input_shape"):
        loader.read_train_params(tmp_path / "model.keras")


def test_temperature(tmp_path):
    model = tmp_path / "model.keras"
    assert loader.read_temperature(model) == 1.0  # uncalibrated
    with pytest.raises(DermaiError, match="calibration not found"):
        loader.read_temperature(model, required=True)
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 1.5}))
    assert loader.read_temperature(model) == 1.5
    bad = tmp_path / "bad.json"
    for t in (0, -1, "nan"):
        bad.write_text(json.dumps({"temperature": t}))
        with pytest.raises(DermaiError, match="temperature"):
            loader.read_temperature(model, bad)
