"""`dermai audit` on generated images: copies, re-encoded near-duplicates and unrelated images
across two folders, folder vs index CSV, and split vs split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermai.cli import main
from dermai.core.synth import lesion_image
from imaging import encode


def lesions(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    conds = ["nv", "mel", "bkl", "bcc"]
    return [Image.fromarray(lesion_image(conds[k % 4], rng, 150, 200)) for k in range(n)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A: 8 lesions + a copy of one of them (a within-A pair, never reported).
    B: a byte copy of A's a0, a smaller re-encode of A's a1, 6 unrelated lesions, a corrupt file.
    C: 4 lesions unrelated to A."""
    tmp = tmp_path_factory.mktemp("audit")
    a, b, c = tmp / "A", tmp / "B", tmp / "C"
    for d in (a, b / "sub", c):
        d.mkdir(parents=True)
    imgs = lesions(8, 1)
    for k, img in enumerate(imgs):
        (a / f"a{k}.jpg").write_bytes(encode(img, "JPEG", quality=92))
    (a / "a0_copy.jpg").write_bytes((a / "a0.jpg").read_bytes())
    (b / "b_exact.jpg").write_bytes((a / "a0.jpg").read_bytes())
    (b / "sub" / "b_near.jpg").write_bytes(
        encode(imgs[1].resize((160, 120), Image.LANCZOS), "JPEG", quality=70)
    )
    for k, img in enumerate(lesions(6, 2)):
        (b / f"b{k}.png").write_bytes(encode(img, "PNG"))
    (b / "broken.jpg").write_bytes(b"not an image")
    for k, img in enumerate(lesions(4, 3)):
        (c / f"c{k}.jpg").write_bytes(encode(img, "JPEG", quality=90))
    return a, b, c


def audit(*args: str) -> int:
    return main(["audit", "--params", "params.yaml", "--workers", "1", *map(str, args)])


def test_folders_exact_and_perceptual_between_not_within(folders, tmp_path, capsys, caplog):
    a, b, _ = folders
    out = tmp_path / "pairs.csv"
    assert audit(a, b, "--out", out) == 0
    cap = capsys.readouterr()
    assert (
        f"audit: 2 exact, 1 perceptual duplicates, 0 shared group ids between {a} (n=9) "
        f"and {b} (n=8): LEAK" in cap.out
    )
    assert "skipped broken.jpg: not an image" in caplog.text
    pairs = pd.read_csv(out)
    got = sorted(zip(pairs["a_path"], pairs["b_path"], pairs["kind"], strict=True))
    assert got == [
        ("a0.jpg", "b_exact.jpg", "exact"),
        ("a0_copy.jpg", "b_exact.jpg", "exact"),
        ("a1.jpg", "sub/b_near.jpg", "perceptual"),
    ]
    near = pairs[pairs["kind"] == "perceptual"].iloc[0]
    assert 0 < near["verify_distance"] <= 48 and near["distance"] <= 8
    # --fail-on-leak turns the same finding into exit 1; the CSV is still written.
    out.unlink()
    assert audit(a, b, "--out", out, "--fail-on-leak") == 1
    assert "leak: 3 duplicate pair(s)" in capsys.readouterr().err and out.is_file()


def test_flags_override_params(folders, tmp_path, capsys):
    a, b, _ = folders
    assert audit(a, b, "--out", tmp_path / "p.csv", "--verify-max-distance", "0") == 0
    assert "2 exact, 0 perceptual" in capsys.readouterr().out
    assert audit(a, b, "--out", tmp_path / "p.csv", "--dhash-max-distance", "40") == 1
    assert "must be in 0..32" in capsys.readouterr().err


def test_clean_sets(folders, tmp_path, capsys):
    a, _, c = folders
    assert audit(a, c, "--out", tmp_path / "p.csv", "--fail-on-leak") == 0
    assert capsys.readouterr().out.strip().endswith("(n=4): clean")
    assert pd.read_csv(tmp_path / "p.csv").empty


def test_bad_inputs(folders, tmp_path, capsys):
    a, _, _ = folders
    assert audit(a, tmp_path / "nope", "--out", tmp_path / "p.csv") == 1
    assert "not found" in capsys.readouterr().err
    pd.DataFrame({"image_id": ["x"], "path": ["x.jpg"]}).to_csv(tmp_path / "bad.csv")
    assert audit(a, tmp_path / "bad.csv", "--out", tmp_path / "p.csv") == 1
    assert "lacks column(s) sha1, dhash, phash" in capsys.readouterr().err


@pytest.fixture(scope="module")
def indexed(folders, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """`dermai index` over A's images in the folders layout: the same hashing as the audit."""
    a, _, _ = folders
    tmp = tmp_path_factory.mktemp("idx")
    raw = tmp / "raw"
    for k, p in enumerate(sorted(a.glob("*.jpg"))):
        dst = raw / "s" / ["nv", "mel"][k % 2] / "30-59" / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    assert (
        main(
            [
                "index",
                "--params",
                "params.yaml",
                "--raw",
                str(raw),
                "--layout",
                "folders",
                "--workers",
                "1",
                "--out",
                str(tmp / "index.csv"),
                "--rejects",
                str(tmp / "rejects.csv"),
                "--summary",
                str(tmp / "summary.json"),
            ]
        )
        == 0
    )
    return tmp, pd.read_csv(tmp / "index.csv", dtype=str, keep_default_na=False)


def test_folder_hashes_equal_index_hashes(folders, indexed, tmp_path, capsys):
    a, _, _ = folders
    tmp, index = indexed
    assert len(index) == 9
    assert (
        audit(
            tmp / "index.csv",
            a,
            "--out",
            tmp_path / "p.csv",
            "--verify-max-distance",
            "0",
            "--dhash-max-distance",
            "0",
        )
        == 0
    )
    pairs = pd.read_csv(tmp_path / "p.csv")
    # Every image pairs with itself (and the a0/a0_copy twins with each other): all exact.
    assert set(pairs["kind"]) == {"exact"} and len(pairs) == 9 + 2
    same = pairs[pairs["a_image_id"] == pairs["b_image_id"]]
    assert len(same) == 9 and (same["distance"] == 0).all() and (same["verify_distance"] == 0).all()


def test_split_vs_split(indexed, tmp_path, capsys):
    _, index = indexed
    df = index.assign(group_id=[f"L{k // 2}" for k in range(len(index))])
    df = df.assign(leakage_group=[f"LG{k}" for k in range(len(df))])
    by = df.set_index("image_id")
    train = by.loc[["a0", "a1", "a2", "a3", "a4"]].reset_index()
    test = by.loc[["a0_copy", "a5", "a6", "a7"]].reset_index()  # a0_copy: exact twin of a0
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    shared = sorted(set(train["group_id"]) & set(test["group_id"]))
    assert audit(tmp_path / "train.csv", tmp_path / "test.csv", "--out", tmp_path / "p.csv") == 0
    line = capsys.readouterr().out
    assert f"1 exact, 0 perceptual duplicates, {len(shared)} shared group ids" in line
    assert "(n=5)" in line and "(n=4): LEAK" in line
    pairs = pd.read_csv(tmp_path / "p.csv")
    assert pairs[["a_image_id", "b_image_id"]].values.tolist() == [["a0", "a0_copy"]]
    clean = by.loc[["a5", "a6"]].reset_index().assign(group_id="")
    clean.to_csv(tmp_path / "clean.csv", index=False)
    assert audit(tmp_path / "train.csv", tmp_path / "clean.csv", "--out", tmp_path / "p.csv") == 0
    assert capsys.readouterr().out.strip().endswith("clean")


def test_shared_groups_use_every_group_key(indexed, tmp_path, capsys, caplog):
    """With the index's `groups` column (index.group_keys), lesion and patient ids both count,
    and equal values under different keys do not match."""
    import logging

    caplog.set_level(logging.INFO)
    _, index = indexed
    by = index.set_index("image_id")
    train = (
        by.loc[["a2", "a3", "a4"]]
        .reset_index()
        .assign(groups=["lesion_id=L1;patient_id=P1", "lesion_id=L2;patient_id=P2", "lesion_id=X"])
    )
    test = (
        by.loc[["a5", "a6", "a7"]]
        .reset_index()
        .assign(groups=["lesion_id=L9;patient_id=P1", "lesion_id=L2", "patient_id=X"])
    )
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    assert audit(tmp_path / "train.csv", tmp_path / "test.csv", "--out", tmp_path / "p.csv") == 0
    assert "0 exact, 0 perceptual duplicates, 2 shared group ids" in capsys.readouterr().out
    assert "{'lesion_id': 1, 'patient_id': 1}" in caplog.text
