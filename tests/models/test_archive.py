"""The .keras archive is byte-reproducible: no save date, fixed zip metadata, still loadable."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from dermai.models import archive


def test_two_saves_seconds_apart_are_identical_and_load(tmp_path: Path, monkeypatch) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    archive.save_keras(model, tmp_path / "a.keras")
    # a save a whole day later: everything time-dependent would differ
    import time as time_mod

    real = time_mod.time
    monkeypatch.setattr(time_mod, "time", lambda: real() + 86_400)
    monkeypatch.setattr(time_mod, "localtime", lambda t=None: time_mod.gmtime(real() + 86_400))
    archive.save_keras(model, tmp_path / "b.keras")
    monkeypatch.undo()
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()

    with zipfile.ZipFile(tmp_path / "a.keras") as z:
        infos = z.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.date_time for i in infos} == {archive.FIXED_DATE}
        assert "date_saved" not in json.loads(z.read("metadata.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.keras", "b.keras"]  # no temps
    x = np.ones((2, 3), "float32")
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    assert np.array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_shared_object_ids_are_renumbered_by_first_appearance() -> None:
    config = {
        "layers": [
            {"init": {"shared_object_id": 140068613968976}},
            {"init": {"shared_object_id": 99}},
            {"again": [{"shared_object_id": 140068613968976}]},
        ]
    }
    assert archive.renumber_shared_ids(config) == {
        "layers": [
            {"init": {"shared_object_id": 1}},
            {"init": {"shared_object_id": 2}},
            {"again": [{"shared_object_id": 1}]},
        ]
    }
