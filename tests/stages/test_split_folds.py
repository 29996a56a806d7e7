"""`split.folds`: off (the default) the sample's split files are byte-identical to the committed
run's (golden md5s from dvc.lock before folds existed); on, folds.csv holds every image once with
whole leakage groups, and the train/val/test files do not change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dermai.cli import main

# data/splits/*.csv and the split reports of `make run` on the embedded sample at eedc68f.
GOLDEN = {
    "splits/train.csv": "f8de05eafac0ec9900b1e1d4b73e66c4",
    "splits/val.csv": "07ae93c013a162d7719289d9e0996d78",
    "splits/test.csv": "dded2cad892e69869efce19ade03ce81",
    "split_summary.csv": "fa5508be11cb02604d299d208976d0e0",
    "leakage.json": "7d8e51be18c8df4132f1fe1587260415",
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def split(tmp: Path, data: Path, folds: int) -> Path:
    out = tmp / f"folds{folds}"
    out.mkdir()
    (out / "params.yaml").write_text(yaml.safe_dump({"split": {"folds": folds}}))
    args = ["--params", str(out / "params.yaml"), "--index", f"{data}/index.csv"]
    args += ["--groups", f"{data}/groups.csv", "--pairs", f"{data}/duplicates.csv"]
    args += ["--out", f"{out}/splits", "--summary", f"{out}/split_summary.csv"]
    assert main(["split", *args, "--leakage", f"{out}/leakage.json"]) == 0
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The embedded sample, indexed and deduplicated with the project's params."""
    tmp = tmp_path_factory.mktemp("sample")
    params = ["--params", "params.yaml"]
    assert main(["sample", *params, "--out", f"{tmp}/raw"]) == 0
    d = tmp / "data"
    index = ["--out", f"{d}/index.csv", "--rejects", f"{d}/rejects.csv"]
    assert main(["index", *params, "--raw", f"{tmp}/raw", *index, "--summary", f"{d}/s.json"]) == 0
    dedup = ["--index", f"{d}/index.csv", "--pairs", f"{d}/duplicates.csv"]
    assert (
        main(["dedup", *params, *dedup, "--groups", f"{d}/groups.csv", "--summary", f"{d}/d.json"])
        == 0
    )
    return tmp, d


def test_folds_off_is_byte_identical_to_the_golden_sample_split(sample):
    tmp, data = sample
    out = split(tmp, data, 0)
    assert {name: md5(out / name) for name in GOLDEN} == GOLDEN
    assert not (out / "splits" / "folds.csv").exists()


def test_folds_on_hold_every_image_once_and_leave_the_split_files_alone(sample):
    tmp, data = sample
    out = split(tmp, data, 5)
    for name in ("splits/train.csv", "splits/val.csv", "splits/test.csv", "split_summary.csv"):
        assert md5(out / name) == GOLDEN[name], name
    folds = pd.read_csv(out / "splits" / "folds.csv", dtype=str, keep_default_na=False)
    index = pd.read_csv(data / "index.csv", dtype=str, keep_default_na=False)
    assert sorted(folds["image_id"]) == sorted(index["image_id"])  # each image held out once
    assert (folds.groupby("leakage_group")["fold"].nunique() == 1).all()  # groups whole
    assert set(folds["fold"]) == {"0", "1", "2", "3", "4"}
    report = json.loads((out / "leakage.json").read_text())["folds"]
    assert report["k"] == 5 and sum(report["sizes"]) == len(index)
    assert report["cross_fold_groups"] == 0
    # every condition of the sample (>= 5 groups each) is held out in every fold
    assert all(min(counts) > 0 for counts in report["by_condition"].values())
