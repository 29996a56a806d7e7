"""model.colour_constancy end to end through the stages: tfrecords -> train -> train_params.json
-> the runtime's Predictor. About a minute (one tiny image-pipeline epoch), so `slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deploy import lesion
from dermai.cli import main
from imaging import write_splits

pytestmark = pytest.mark.slow


def test_a_model_trained_with_colour_constancy_is_loaded_with_it(tmp_path: Path):
    from dermai.runtime import bundle as bundle_mod

    counts = {"bcc": 8, "mel": 10, "nv": 18}
    raw, sp = write_splits(
        tmp_path, counts, lambda cond, k: lesion(cond, seed=k, height=36, width=48)
    )
    prm = tmp_path / "params.yaml"
    prm.write_text(
        yaml.safe_dump(
            {
                "base": {"classes": sorted(counts)},
                "index": {"raw_root": str(raw), "workers": 1},
                "model": {
                    "weights": "none",
                    "image_height": 24,
                    "image_width": 32,
                    "colour_constancy": 6,
                },
                "train": {
                    "feature_cache": False,
                    "head_epochs": 1,
                    "finetune_epochs": 0,
                    "batch_size": 8,
                },
            }
        )
    )
    tfr, model = tmp_path / "tfr", tmp_path / "m" / "model.keras"
    assert main(["tfrecords", "--params", str(prm), "--splits", str(sp), "--out", str(tfr)]) == 0
    assert json.loads((tfr / "meta.json").read_text())["colour_constancy"] == 6.0
    args = ["train", "--params", str(prm), "--tfrecords", str(tfr), "--model", str(model)]
    args += ["--pretrained", str(tmp_path / "unused.h5"), "--live", str(tmp_path / "live")]
    args += ["--train-params", str(model.parent / "train_params.json")]
    assert main(args) == 0
    meta = json.loads((model.parent / "train_params.json").read_text())
    assert meta["colour_constancy"] == 6.0 and meta["params"]["model"]["colour_constancy"] == 6.0
    assert bundle_mod.load(model).colour_constancy == 6.0
