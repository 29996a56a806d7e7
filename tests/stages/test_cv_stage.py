"""`dermai cv`: folds off writes only {"folds": 0}; on, it pools the folds' out-of-fold files
into report.json and predictions.csv (with each image's leakage group, for `dermai compare`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from dermai.cli import main

CLASSES = ["acne", "tinea"]


def run(tmp: Path, folds: int) -> int:
    (tmp / "params.yaml").write_text(
        yaml.safe_dump({"split": {"folds": folds}, "evaluate": {"bootstrap": 20}})
    )
    args = ["--params", str(tmp / "params.yaml"), "--splits", str(tmp / "splits")]
    return main(["cv", *args, "--folds-dir", str(tmp / "cv"), "--out", str(tmp / "out")])


def test_folds_off_writes_only_the_off_report(tmp_path):
    assert run(tmp_path, 0) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["folds"] == 0


def write_folds(tmp: Path, k: int = 2, n: int = 12) -> None:
    ids = [f"i{j:02d}" for j in range(n)]
    folds = pd.DataFrame(
        {
            "image_id": ids,
            "fold": [j % k for j in range(n)],
            "leakage_group": [f"g{j // 2}" for j in range(n)],
            "condition": [CLASSES[j % 3 % 2] for j in range(n)],
            "age_group": ["60+"] * n,
        }
    )
    (tmp / "splits").mkdir()
    folds.to_csv(tmp / "splits" / "folds.csv", index=False)
    for f in range(k):
        d = tmp / "cv" / f"fold_{f}"
        d.mkdir(parents=True)
        rows = folds[folds["fold"] == f]
        p = [0.9 if c == "acne" else 0.2 for c in rows["condition"]]
        oof = pd.DataFrame({"image_id": rows["image_id"], "label": rows["condition"], "p_acne": p})
        oof.assign(p_tinea=1 - oof["p_acne"]).to_csv(d / "oof.csv", index=False)
        (d / "fold.json").write_text(json.dumps({"fold": f, "classes": CLASSES}))


def test_folds_on_pool_every_image_once(tmp_path):
    write_folds(tmp_path)
    assert run(tmp_path, 2) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["folds"], report["n"], report["groups"], report["accuracy"]) == (2, 12, 6, 1.0)
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(pred.columns) == ["image_id", "label", "p_acne", "p_tinea", "leakage_group"]
    assert len(pred) == 12 and pred["image_id"].is_unique


def test_a_missing_fold_is_a_one_line_error(tmp_path, capsys):
    write_folds(tmp_path)
    (tmp_path / "cv" / "fold_1" / "oof.csv").unlink()
    assert run(tmp_path, 2) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dermai cv: error: fold 1 predictions not found"), err
