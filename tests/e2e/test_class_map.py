"""The sample pipeline with an own 4-class map and `base.classes: []`, end to end through dvc.

On a copy of the session's tiny run (`tiny_run`) with the class map set: `dvc repro export`
reruns every stage the map reaches (sample to export) and reuses the rest (pretrained); the
headline stage, which nothing here checks, is left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline import copy_run, merge, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # most of a dvc repro; load varies

# HAM's seven sample classes -> four own classes; vasc dropped with a stated reason.
CLASS_MAP = {
    "akiec": "keratinocytic",
    "bcc": "keratinocytic",
    "bkl": "benign",
    "df": "benign",
    "nv": "naevus",
    "mel": "melanoma",
    "vasc": "drop",
}
CLASSES = ["benign", "keratinocytic", "melanoma", "naevus"]


def test_own_four_classes_flow_from_index_to_export(tiny_run: Path, tmp_path: Path):
    project = copy_run(tiny_run, tmp_path / "proj")
    params = project / "params.yaml"
    overrides = {
        "base": {"classes": []},
        "sample": {"n_images": 120},
        "index": {"class_map": CLASS_MAP},
    }
    merged = merge(yaml.safe_load(params.read_text()), overrides)
    params.write_text(yaml.safe_dump(merged, sort_keys=False))
    ran = sh("dvc", "repro", "export", cwd=project).stdout
    for stage in ("sample", "index", "validate", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in ran, stage  # a run of the map, not tiny_run's
    summary = json.loads((project / "data/reports/index_summary.json").read_text())
    assert summary["classes"] == CLASSES
    assert set(summary["by_condition"]) == set(CLASSES)
    assert summary["dropped_by_class_map"]["vasc"] > 0
    assert (
        summary["rejects_by_reason"]["dropped by index.class_map"]
        == summary["dropped_by_class_map"]["vasc"]
    )
    assert json.loads((project / "data/index/classes.json").read_text()) == {"classes": CLASSES}
    gates = json.loads((project / "data/reports/validation/summary.json").read_text())
    assert gates["success"]
    assert gates["suites"]["index"]["parameters"]["classes"] == CLASSES
    assert json.loads((project / "data/tfrecords/meta.json").read_text())["classes"] == CLASSES
    assert json.loads((project / "models/train_params.json").read_text())["classes"] == CLASSES
    card = (project / "reports/model_card.md").read_text()
    assert "4 conditions" in card and ", ".join(CLASSES) in card
    # The export ran on the 4-class model: both files carry its classes, and its parity was
    # measured on every test image of the mapped split.
    from dermai.runtime.tflite import read_metadata

    export = json.loads((project / "reports/export.json").read_text())
    n_test = len((project / "data/splits/test.csv").read_text().splitlines()) - 1
    assert export["test_images"] == n_test > 0
    assert export["float32"]["agreement"] == 1.0
    for name in ("model_float32.tflite", "model_int8.tflite"):
        meta = read_metadata((project / "models" / name).read_bytes())
        assert meta["classes"] == CLASSES, name
