"""`split.external_source`: a held-out site as a fourth split, on a generated index (CSV only,
no images: the split stage reads nothing else)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dermai.cli import main
from dermai.core.schema import INDEX_COLUMNS

SOURCES = ("siteA", "siteB", "siteC")
CONDITIONS = ("bcc", "bkl", "mel", "nv")
AGES = ("0-29", "30-59", "60+")
# Leakage groups: g_span joins a siteC image with a siteA and a siteB image (a lesion seen at
# two clinics); g_b joins two siteB images; every other image is its own group.
SPAN = {"im005": "g_span", "im012": "g_span", "im030": "g_span", "im013": "g_b", "im040": "g_b"}

# sha256 of every output for the default params (external_source: []), produced by the split
# stage BEFORE external_source existed (main at 14e6682). The default must stay byte-identical:
# downstream caches (tfrecords, features) key on these bytes.
GOLDEN = {
    "splits/train.csv": "878169efa0ac99b22a032f039dc0dd538b75deb5e1eef35c29382877fdc05d25",
    "splits/val.csv": "c3cbf9f58720f072c66913b86a24ab49fe8774f9a31a8eb5ae5209dd2ef9d206",
    "splits/test.csv": "fa02ea5bdf257b270a04e7f9b3068a5b3a7e9c99fb85fc1253feaa2e94458952",
    "split_summary.csv": "6183fe1e82178fec64ad570b41029bf28982768250ed6407827323926d8eefe2",
    "leakage.json": "4c9fb6832b5f568bc14d0a510860a25620fe95b7db9805f72a449e1f635a3dac",
}


def make_inputs(d: Path, n: int = 90) -> None:
    """index.csv, groups.csv and duplicates.csv as `index` and `dedup` would write them."""
    rng = np.random.default_rng(3)
    rows = []
    for k in range(n):
        iid = f"im{k:03d}"
        rows.append(
            {
                "image_id": iid,
                "path": f"{SOURCES[k % 3]}/{iid}.jpg",
                "condition": CONDITIONS[(k // 3) % 4],
                "age_group": AGES[(k // 12) % 3],
                "source": SOURCES[k % 3],
                "group_id": "",
                "sha1": hashlib.sha1(iid.encode()).hexdigest(),
                "dhash": f"{int(rng.integers(0, 2**62)):016x}",
                "phash": f"{int(rng.integers(0, 2**62)):016x}",
                "width": "200",
                "height": "150",
                "format": "JPEG",
                "bytes": str(1000 + k),
                "groups": "",
                "image_type": "",
            }
        )
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    d.mkdir(parents=True, exist_ok=True)
    index.to_csv(d / "index.csv", index=False)
    groups = pd.DataFrame(
        {
            "image_id": index["image_id"],
            "leakage_group": [SPAN.get(i, i) for i in index["image_id"]],
        }
    )
    groups.to_csv(d / "groups.csv", index=False)
    pairs = pd.DataFrame(
        [
            ("im005", "im012", "exact", 0, 0),
            ("im005", "im030", "perceptual", 3, 20),
            ("im013", "im040", "perceptual", 2, 10),
        ],
        columns=["a", "b", "kind", "distance", "verify_distance"],
    )
    pairs.to_csv(d / "duplicates.csv", index=False)


def run_split(d: Path, external: list[str] | None) -> int:
    prm: dict = {"split": {}} if external is None else {"split": {"external_source": external}}
    (d / "params.yaml").write_text(yaml.safe_dump(prm))
    return main(
        [
            "split",
            "--params",
            str(d / "params.yaml"),
            "--index",
            str(d / "index.csv"),
            "--groups",
            str(d / "groups.csv"),
            "--pairs",
            str(d / "duplicates.csv"),
            "--out",
            str(d / "splits"),
            "--summary",
            str(d / "split_summary.csv"),
            "--leakage",
            str(d / "leakage.json"),
        ]
    )


def digests(d: Path) -> dict[str, str]:
    return {k: hashlib.sha256((d / k).read_bytes()).hexdigest() for k in GOLDEN}


def read(d: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(d / "splits" / f"{split}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ext")
    make_inputs(d)
    assert run_split(d, ["siteC"]) == 0
    return d


def test_default_is_byte_identical_to_before_and_writes_no_external(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    assert run_split(tmp_path, None) == 0
    assert digests(tmp_path) == GOLDEN
    assert not (tmp_path / "splits" / "external.csv").exists()
    (tmp_path / "splits" / "external.csv").write_text("stale\n")  # a held-out run before
    assert run_split(tmp_path, []) == 0
    assert digests(tmp_path) == GOLDEN
    assert not (tmp_path / "splits" / "external.csv").exists()


def test_external_holds_exactly_the_named_source_and_its_groups(held_out: Path) -> None:
    index = pd.read_csv(held_out / "index.csv", dtype=str, keep_default_na=False)
    ext = read(held_out, "external")
    site_c = set(index.loc[index["source"] == "siteC", "image_id"])
    # siteC whole, plus im012 (siteA) and im030 (siteB) that share g_span with siteC's im005.
    assert set(ext["image_id"]) == site_c | {"im012", "im030"}
    rest = pd.concat([read(held_out, s) for s in ("train", "val", "test")])
    assert not set(rest["source"]) & {"siteC"}
    assert len(rest) + len(ext) == len(index)
    assert not set(rest["image_id"]) & set(ext["image_id"])
    assert not set(rest["leakage_group"]) & set(ext["leakage_group"])
    # g_b (two siteB images) stays whole in one of train/val/test.
    assert rest.loc[rest["image_id"].isin(["im013", "im040"]), "leakage_group"].nunique() == 1


def test_fractions_apply_to_the_rest_and_report_counts_spanning_groups(held_out: Path) -> None:
    leak = json.loads((held_out / "leakage.json").read_text())
    assert leak["external"] == {
        "sources": ["siteC"],
        "rule": "a leakage group holding any image of a held-out source goes to external whole",
        "images": 32,
        "images_of_sources": 30,
        "images_pulled_by_groups": 2,
        "groups_spanning_sources": 1,
    }
    assert leak["targets"] == {"train": 46.4, "val": 5.8, "test": 5.8}  # 0.8/0.1/0.1 x 58
    after = leak["after"]
    assert after["sizes"]["external"] == 32 and sum(after["sizes"].values()) == 90
    assert after["cross_split_leakage_groups"] == 0 and after["cross_split_exact_pairs"] == 0
    # The naive baseline holds out siteC's images only, so g_span crosses into training there.
    before = leak["before"]
    assert before["sizes"]["external"] == 30
    assert before["cross_split_leakage_groups"] >= 1 and before["cross_split_exact_pairs"] == 1
    summary = pd.read_csv(held_out / "split_summary.csv")
    assert list(dict.fromkeys(summary["split"])) == ["train", "val", "test", "external"]
    assert summary.loc[summary["split"] == "external", "count"].sum() == 32


def test_unknown_source_is_a_one_line_error_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_inputs(tmp_path)
    assert run_split(tmp_path, ["rosendahl", "siteB"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "rosendahl" in err[0] and "siteA, siteB, siteC" in err[0]
    assert not (tmp_path / "splits").exists()


def test_holding_out_every_source_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    make_inputs(tmp_path)
    assert run_split(tmp_path, list(SOURCES)) == 1
    assert "nothing is left to train on" in capsys.readouterr().err
