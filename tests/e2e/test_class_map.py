"""The sample pipeline with an own 4-class map and `base.classes: []`, end to end through dvc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import make_project, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # a whole dvc repro; load varies

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


def test_own_four_classes_flow_from_index_to_export(tmp_path: Path):
    project = make_project(
        tmp_path / "proj",
        {
            "base": {"classes": []},
            "sample": {"n_images": 120},
            "index": {"class_map": CLASS_MAP},
        },
    )
    sh("dvc", "repro", cwd=project)
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
    export = json.loads((project / "reports/export.json").read_text())
    assert json.dumps(export)  # the export ran on the 4-class model
    for name in ("model_float32.tflite", "model_int8.tflite"):
        assert (project / "models" / name).stat().st_size > 0
