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


def test_a_model_trained_with_dermais_own_loss_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """The archive names the training loss; a logit_adjust model failed to load in evaluate
    (a fresh process) on HAM10000. `load_keras` registers the loss first; plain Keras cannot."""
    import subprocess
    import sys

    import keras

    from dermai.models.classifier import LogitAdjustedCrossentropy

    keras.utils.set_random_seed(0)
    # As training does: the head is compiled with the loss (phase 1 on cached features), then
    # nested in the deployable model; Keras deserialises a nested model's compile config even
    # with compile=False.
    inputs = keras.Input((3,))
    head = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    head.compile(optimizer="adam", loss=LogitAdjustedCrossentropy([0.25, 0.75], tau=1.0))
    outer = keras.Input((3,))
    model = keras.Model(outer, head(outer))
    path = tmp_path / "m.keras"
    archive.save_keras(model, path)
    x = np.ones((2, 3), "float32")
    np.save(tmp_path / "expected.npy", np.asarray(model(x)))

    def fresh(load: str) -> subprocess.CompletedProcess[str]:
        code = (
            "import sys, numpy as np\n"
            f"{load}\n"
            "x = np.ones((2, 3), 'float32')\n"
            "assert np.array_equal(np.asarray(m(x)), np.load(sys.argv[2]))\n"
        )
        args = [sys.executable, "-c", code, str(path), str(tmp_path / "expected.npy")]
        return subprocess.run(args, capture_output=True, text=True, timeout=300)

    ok = fresh("from dermai.models import archive; m = archive.load_keras(sys.argv[1])")
    assert ok.returncode == 0, ok.stderr[-2000:]
    plain = fresh("import keras; m = keras.saving.load_model(sys.argv[1], compile=False)")
    assert plain.returncode != 0 and "LogitAdjustedCrossentropy" in plain.stderr
