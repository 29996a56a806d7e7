"""The sample pipeline with one of its two sources held out (`split.external_source`), end to
end through dvc: split, gates, TFRecords, evaluate, headline and model card all carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import make_project, sh

# A whole dvc repro (several minutes on a loaded machine): slow as well as e2e.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

HELD_OUT = "clinic_b"  # `dermai sample` writes clinic_a and clinic_b


def test_sample_pipeline_with_a_held_out_site(tmp_path: Path):
    project = make_project(
        tmp_path / "proj",
        {"sample": {"n_images": 120}, "split": {"external_source": [HELD_OUT]}},
    )
    sh("dvc", "repro", cwd=project)
    sp = project / "data/splits"
    read = {
        s: pd.read_csv(sp / f"{s}.csv", dtype=str) for s in ("train", "val", "test", "external")
    }
    index = pd.read_csv(project / "data/index/index.csv", dtype=str)
    held = set(index.loc[index["source"] == HELD_OUT, "image_id"])
    ext_ids = set(read["external"]["image_id"])
    assert held <= ext_ids
    for s in ("train", "val", "test"):
        assert HELD_OUT not in set(read[s]["source"])
        assert not set(read[s]["leakage_group"]) & set(read["external"]["leakage_group"])
    leak = json.loads((project / "data/reports/leakage.json").read_text())
    assert leak["external"]["images"] == len(ext_ids)
    assert leak["external"]["images_of_sources"] == len(held)
    assert leak["after"]["cross_split_leakage_groups"] == 0
    gates = json.loads((project / "data/reports/validation/summary.json").read_text())
    assert gates["success"]
    checks = gates["suites"]["splits"]["expectations"]
    assert checks["external_size"]["observed_value"] == len(ext_ids)
    meta = json.loads((project / "data/tfrecords/meta.json").read_text())
    assert meta["splits"]["external"]["images"] == len(ext_ids)
    rep = json.loads((project / "reports/evaluate/report_external.json").read_text())
    assert rep["n"] == len(ext_ids) and "ci" in rep and "source" in rep["subgroups"]
    metrics = json.loads((project / "metrics.json").read_text())
    assert {"ext_acc", "ext_bacc", "ext_auc"} <= set(metrics)
    assert (
        f"### Held-out site (external: {HELD_OUT})"
        in (project / "reports/model_card.md").read_text()
    )
