"""`dermai evaluate` with a held-out site (`split.external_source`): the external TFRecords split
is reported like test, and the temperature and OOD guard still come from val alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tinymodel
from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]


def tfrecords(tmp: Path, splits: Path, name: str) -> Path:
    args = ["--params", str(tmp / "params.yaml"), "--splits", str(splits), "--out", str(tmp / name)]
    assert main(["tfrecords", *args]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluate_ext")
    raw = tmp / "raw"
    df = tinymodel.write_index(
        raw, CLASSES, ["rosendahl" if k >= 36 else "vidir" for k in range(48)]
    )
    sp = tmp / "splits"
    sp.mkdir()
    df.iloc[:12].to_csv(sp / "train.csv", index=False)
    df.iloc[12:24].to_csv(sp / "val.csv", index=False)
    df.iloc[24:36].to_csv(sp / "test.csv", index=False)
    (tmp / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "base": {"classes": CLASSES},
                "index": {"raw_root": str(raw), "workers": 1},
                "model": {"image_height": tinymodel.H, "image_width": tinymodel.W},
                "evaluate": {"bootstrap": 50, "ece_bins": 10, "errors_per_class": 1},
            }
        )
    )
    tfrecords(tmp, sp, "tfr_plain")
    sp_ext = tmp / "splits_ext"
    shutil.copytree(sp, sp_ext)
    df.iloc[36:].to_csv(sp_ext / "external.csv", index=False)
    tfrecords(tmp, sp_ext, "tfr_ext")
    tinymodel.save(tinymodel.build(CLASSES), tmp / "models", CLASSES)
    r = tmp / "data_reports"
    r.mkdir()
    pd.DataFrame(
        [
            {"split": s, "condition": c, "age_group": "0-29", "count": 4}
            for s in ("train", "val", "test", "external")
            for c in CLASSES
        ]
    ).to_csv(r / "split_summary.csv", index=False)
    sizes = {"train": 12, "val": 12, "test": 12, "external": 12}
    (r / "leakage.json").write_text(
        json.dumps(
            {
                "before": {"method": "naive", "sizes": sizes},
                "after": {"method": "policy=group", "sizes": sizes},
                "external": {"sources": ["rosendahl"], "images_pulled_by_groups": 0},
            }
        )
    )
    (r / "index_summary.json").write_text(json.dumps({"by_source": {}, "rejected": 0}))
    return tmp


def evaluate(tmp: Path, tfr: str, name: str) -> Path:
    out, r = tmp / name, tmp / "data_reports"
    args = {
        "--params": tmp / "params.yaml",
        "--model": tmp / "models" / "model.keras",
        "--tfrecords": tmp / tfr,
        "--split-summary": r / "split_summary.csv",
        "--leakage": r / "leakage.json",
        "--index-summary": r / "index_summary.json",
        "--calibration": out / "calibration.json",
        "--out": out / "reports",
        "--card": out / "model_card.md",
        "--live": out / "live",
        "--ood": out / "ood.json",
        "--card-json": out / "model_card.json",
    }
    assert main(["evaluate", *[str(x) for kv in args.items() for x in kv]]) == 0
    return out


def test_external_split_reported_like_test_with_val_only_calibration(project):
    plain = evaluate(project, "tfr_plain", "plain")
    ext = evaluate(project, "tfr_ext", "ext")
    assert not (plain / "reports" / "report_external.json").exists()
    rep = json.loads((ext / "reports" / "report_external.json").read_text())
    test = json.loads((ext / "reports" / "report_test.json").read_text())
    assert rep["n"] == 12 and set(rep) == set(test)
    assert set(rep["ci"]) == set(test["ci"]) and rep["ci"]["accuracy"]["n_resamples"] == 50
    assert list(rep["subgroups"]["source"]) == ["rosendahl"]
    preds = pd.read_csv(ext / "reports" / "predictions_external.csv")
    assert sorted(preds["image_id"]) == [f"i{k:03d}" for k in range(36, 48)]
    assert (ext / "reports" / "errors_external" / "index.html").is_file()
    live = json.loads((ext / "live" / "metrics.json").read_text())
    assert live["external"]["n"] == 12
    # Temperature and OOD threshold: fitted on val alone, so the held-out site changes neither.
    for name in ("calibration.json", "ood.json"):
        assert (ext / name).read_bytes() == (plain / name).read_bytes(), name
    # The test report is the same too: holding out more data never touches test.
    assert (ext / "reports" / "report_test.json").read_bytes() == (
        plain / "reports" / "report_test.json"
    ).read_bytes()
    card = (ext / "model_card.md").read_text()
    assert "### Held-out site (external: rosendahl)" in card
    assert "Held-out site" not in (plain / "model_card.md").read_text()
