"""dedup and split stages on a generated dataset: golden duplicates, determinism, leakage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from dermai import params
from dermai.cli import main
from dermai.core.synth import lesion_image
from imaging import encode

DEFAULTS = params.load("params.yaml")


def make_raw(root: Path) -> dict[str, str]:
    """Unrelated synthetic lesions plus known copies. Returns copy name -> original name."""
    rng = np.random.default_rng(7)
    classes = ["nv", "mel", "bkl", "bcc"]
    originals = {}
    for k in range(48):
        cond = classes[k % 4]
        age = ["0-29", "30-59", "60+"][k % 3]
        arr = lesion_image(cond, rng, 150, 200)
        rel = f"src{k % 2}/{cond}/{age}/img{k:03d}.jpg"
        originals[rel] = Image.fromarray(arr)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode(originals[rel], "JPEG", quality=92))
    rels = sorted(originals)
    copies = {}

    def put(name: str, src_rel: str, data: bytes) -> None:
        path = root / Path(src_rel).parent / f"{name}.jpg"
        path.write_bytes(data)
        copies[name] = Path(src_rel).stem

    img = originals[rels[0]]
    put("exact", rels[0], (root / rels[0]).read_bytes())
    put("resized", rels[1], encode(originals[rels[1]].resize((100, 75), Image.LANCZOS), "JPEG"))
    put("upscaled", rels[2], encode(originals[rels[2]].resize((400, 300)), "JPEG"))
    put("q70", rels[3], encode(originals[rels[3]], "JPEG", quality=70))
    w, h = img.size
    put("crop2", rels[4], encode(originals[rels[4]].crop((2, 1, w - 2, h - 1)), "JPEG"))
    return copies


def run_stages(tmp: Path, raw: Path, seed: int = 42, policy: str = "group") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    prm = {
        "base": {"seed": seed},
        "index": {"raw_root": str(raw), "workers": 1},
        "split": {"duplicate_policy": policy},
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(prm))
    p = ["--params", str(tmp / "params.yaml")]
    d = tmp / "data"
    assert (
        main(
            [
                "index",
                *p,
                "--out",
                f"{d}/index.csv",
                "--rejects",
                f"{d}/rejects.csv",
                "--summary",
                f"{d}/index_summary.json",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "dedup",
                *p,
                "--index",
                f"{d}/index.csv",
                "--pairs",
                f"{d}/duplicates.csv",
                "--groups",
                f"{d}/groups.csv",
                "--summary",
                f"{d}/dedup_summary.json",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "split",
                *p,
                "--index",
                f"{d}/index.csv",
                "--groups",
                f"{d}/groups.csv",
                "--pairs",
                f"{d}/duplicates.csv",
                "--out",
                f"{d}/splits",
                "--summary",
                f"{d}/split_summary.csv",
                "--leakage",
                f"{d}/leakage.json",
            ]
        )
        == 0
    )
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dd")
    raw = tmp / "raw"
    copies = make_raw(raw)
    return tmp, raw, copies, run_stages(tmp / "a", raw)


def test_known_copies_found_and_unrelated_images_not(built):
    _, _, copies, d = built
    pairs = pd.read_csv(d / "duplicates.csv", dtype={"a": str, "b": str})
    found = {tuple(sorted(x)): k for *x, k in pairs[["a", "b", "kind"]].itertuples(index=False)}
    expected = {
        tuple(sorted((c, o))): ("exact" if c == "exact" else "perceptual")
        for c, o in copies.items()
    }
    assert found == expected  # every copy found at the default radius, no unrelated pair
    assert (
        pairs.loc[pairs["kind"] == "perceptual", "distance"] <= DEFAULTS.dedup.dhash_max_distance
    ).all()


def test_groups_and_summary(built):
    _, _, copies, d = built
    groups = pd.read_csv(d / "groups.csv")
    summary = json.loads((d / "dedup_summary.json").read_text())
    assert len(groups) == 48 + len(copies)
    assert summary["leakage_groups"] == 48
    assert summary["pairs_by_kind"] == {"exact": 1, "perceptual": len(copies) - 1}
    assert summary["largest_group"]["size"] == 2


def test_split_keeps_groups_whole_and_reports_leakage(built):
    _, _, _, d = built
    splits = {s: pd.read_csv(d / f"splits/{s}.csv", dtype=str) for s in ("train", "val", "test")}
    all_ids = pd.concat([df["image_id"] for df in splits.values()])
    index = pd.read_csv(d / "index.csv", dtype=str)
    assert sorted(all_ids) == sorted(index["image_id"])  # each image exactly once
    owner = {g: s for s, df in splits.items() for g in df["leakage_group"]}
    for s, df in splits.items():
        assert all(owner[g] == s for g in df["leakage_group"])
    leak = json.loads((d / "leakage.json").read_text())
    after = leak["after"]
    assert after["cross_split_exact_pairs"] == after["cross_split_perceptual_pairs"] == 0
    assert after["cross_split_leakage_groups"] == 0
    summary = pd.read_csv(d / "split_summary.csv")
    assert summary["count"].sum() == len(index)


def test_same_seed_byte_identical_other_seed_differs(built, tmp_path):
    _, raw, _, d = built
    again = run_stages(tmp_path / "b", raw)
    for name in (
        "index.csv",
        "duplicates.csv",
        "groups.csv",
        "split_summary.csv",
        "leakage.json",
        "splits/train.csv",
        "splits/val.csv",
        "splits/test.csv",
    ):
        assert (d / name).read_bytes() == (again / name).read_bytes(), name
    other = run_stages(tmp_path / "c", raw, seed=7)
    assert (d / "splits/test.csv").read_bytes() != (other / "splits/test.csv").read_bytes()


def test_train_policy_puts_crossing_groups_in_train(built, tmp_path):
    _, raw, _, _ = built
    d = run_stages(tmp_path / "t", raw, policy="train")
    leak = json.loads((d / "leakage.json").read_text())
    assert leak["policy"] == "train" and leak["after"]["cross_split_leakage_groups"] == 0


def test_missing_groups_is_one_line_error(tmp_path, capsys):
    rc = main(
        [
            "split",
            "--index",
            str(tmp_path / "none.csv"),
            "--groups",
            "x",
            "--pairs",
            "y",
            "--out",
            "z",
            "--summary",
            "s",
            "--leakage",
            "l",
        ]
    )
    assert rc == 1
    assert "index not found" in capsys.readouterr().err


def test_group_keys_union_with_duplicates_and_are_counted_per_key(built, tmp_path):
    """Patient ids join images no lesion id or hash joins; dedup and split count each key."""
    _, _, _, d = built
    index = pd.read_csv(d / "index.csv", dtype=str, keep_default_na=False)
    # img000-img001 share a lesion; img000, img002 and img004 share a patient.
    cells = {
        "img000": "lesion_id=L1;patient_id=P1",
        "img001": "lesion_id=L1",
        "img002": "patient_id=P1",
        "img004": "lesion_id=L9;patient_id=P1",
    }
    index["groups"] = [cells.get(i, "") for i in index["image_id"]]
    e = tmp_path / "e"
    e.mkdir()
    index.to_csv(e / "index.csv", index=False)
    p = ["--params", str(d.parent / "params.yaml")]
    assert (
        main(
            [
                "dedup",
                *p,
                "--index",
                f"{e}/index.csv",
                "--pairs",
                f"{e}/duplicates.csv",
                "--groups",
                f"{e}/groups.csv",
                "--summary",
                f"{e}/dedup.json",
            ]
        )
        == 0
    )
    groups = pd.read_csv(e / "groups.csv", dtype=str).set_index("image_id")["leakage_group"]
    assert len({groups[i] for i in ("img000", "img001", "img002", "img004")}) == 1
    before = pd.read_csv(d / "groups.csv", dtype=str)["leakage_group"].nunique()
    assert groups.nunique() == before - 3
    summary = json.loads((e / "dedup.json").read_text())
    assert summary["metadata_groups_by_key"] == {
        "lesion_id": {"groups": 2, "images_sharing": 2},
        "patient_id": {"groups": 1, "images_sharing": 3},
    }
    assert (
        main(
            [
                "split",
                *p,
                "--index",
                f"{e}/index.csv",
                "--groups",
                f"{e}/groups.csv",
                "--pairs",
                f"{e}/duplicates.csv",
                "--out",
                f"{e}/splits",
                "--summary",
                f"{e}/split_summary.csv",
                "--leakage",
                f"{e}/leakage.json",
            ]
        )
        == 0
    )
    leak = json.loads((e / "leakage.json").read_text())
    assert leak["after"]["cross_split_groups_by_key"] == {"lesion_id": 0, "patient_id": 0}
    assert set(leak["before"]["cross_split_groups_by_key"]) == {"lesion_id", "patient_id"}
