"""The index stage on generated folders and manifests, including every bad-input case."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dermai.cli import main
from dermai.core.schema import INDEX_COLUMNS
from imaging import encode, gradient

GOOD_JPEG = encode(gradient(40, 30, seed=1), "JPEG")


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run_index(
    tmp: Path, raw: Path, layout: str = "folders", workers: int = 2, extra: dict | None = None
) -> tuple[list[dict], list[dict], dict, int]:
    params = {
        "index": {
            "raw_root": str(raw),
            "layout": layout,
            "workers": workers,
            "chunksize": 2,
            **(extra or {}),
        }
    }
    tmp.mkdir(parents=True, exist_ok=True)
    pfile = tmp / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out = tmp / "out"
    rc = main(
        [
            "index",
            "--params",
            str(pfile),
            "--out",
            str(out / "index.csv"),
            "--rejects",
            str(out / "rejects.csv"),
            "--summary",
            str(out / "summary.json"),
        ]
    )
    if rc:
        return [], [], {}, rc
    rows = list(csv.DictReader((out / "index.csv").read_text().splitlines()))
    rejects = list(csv.DictReader((out / "rejects.csv").read_text().splitlines()))
    return rows, rejects, json.loads((out / "summary.json").read_text()), rc


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    write(raw / "clinic_a/nv/30-59/a1.jpg", GOOD_JPEG)
    write(raw / "clinic_a/mel/60+/a2.png", encode(gradient(30, 20, seed=2), "PNG"))
    write(raw / "clinic_b/nv/0-29/b1.jpg", encode(gradient(50, 40, seed=3), "JPEG"))
    # bad input
    write(raw / "clinic_b/nv/0-29/zero.jpg", b"")
    write(raw / "clinic_b/nv/0-29/trunc.jpg", GOOD_JPEG[: len(GOOD_JPEG) // 2])
    write(raw / "clinic_b/nv/0-29/text.jpg", b"not an image at all\n")
    write(raw / "clinic_b/xyz/0-29/c.jpg", GOOD_JPEG)  # label outside the class list
    write(raw / "clinic_b/nv/old/d.jpg", GOOD_JPEG)  # age group outside the set
    write(raw / "clinic_b/nv/e.jpg", GOOD_JPEG)  # folder that does not match the layout
    write(raw / "clinic_b/nv/0-29/deeper/f.jpg", GOOD_JPEG)  # too deep
    write(raw / "clinic_b/nv/0-29/readme.txt", b"notes")
    write(raw / "clinic_b/mel/60+/a1.jpg", GOOD_JPEG)  # image_id reused
    return raw


def test_folders_layout_rows_and_rejects(tmp_path, folders):
    rows, rejects, summary, rc = run_index(tmp_path, folders)
    assert rc == 0
    assert [r["image_id"] for r in rows] == ["a2", "a1", "b1"]  # sorted by path
    a1 = next(r for r in rows if r["image_id"] == "a1")
    assert a1 == {
        "image_id": "a1",
        "path": "clinic_a/nv/30-59/a1.jpg",
        "condition": "nv",
        "age_group": "30-59",
        "source": "clinic_a",
        "group_id": "",
        "sha1": a1["sha1"],
        "dhash": a1["dhash"],
        "phash": a1["phash"],
        "width": "40",
        "height": "30",
        "format": "JPEG",
        "bytes": str(len(GOOD_JPEG)),
        "groups": "",
        "image_type": "",
    }
    reasons = {Path(r["path"]).name: r["reason"] for r in rejects}
    assert reasons["zero.jpg"].startswith("empty file")
    assert "truncated" in reasons["trunc.jpg"].lower()
    assert reasons["text.jpg"].startswith("not an image")
    assert "label 'xyz' not in configured classes" in reasons["c.jpg"]
    assert "age group 'old'" in reasons["d.jpg"]
    assert "does not match layout" in reasons["e.jpg"]
    assert "does not match layout" in reasons["f.jpg"]
    assert "unsupported extension" in reasons["readme.txt"]
    assert "already used by clinic_a/nv/30-59/a1.jpg" in reasons["a1.jpg"]
    assert summary["files_found"] == 12 == len(rows) + len(rejects)
    assert summary["indexed"] == 3 and summary["rejected"] == 9


def test_output_is_deterministic_across_worker_counts(tmp_path, folders):
    run_index(tmp_path / "w1", folders, workers=1)
    run_index(tmp_path / "w2", folders, workers=2)
    for name in ("index.csv", "rejects.csv", "summary.json"):
        one = (tmp_path / "w1/out" / name).read_bytes()
        assert one == (tmp_path / "w2/out" / name).read_bytes()


def test_special_images_are_indexed(tmp_path):
    raw = tmp_path / "raw"
    write(
        raw / "s/nv/30-59/alpha.png", encode(Image.new("RGBA", (20, 10), (255, 0, 0, 128)), "PNG")
    )
    write(raw / "s/nv/30-59/gray16.png", encode(Image.new("I;16", (20, 10), 40000), "PNG"))
    write(raw / "s/nv/30-59/cmyk.jpg", encode(gradient(20, 10).convert("CMYK"), "JPEG"))
    exif = Image.Exif()
    exif[0x0112] = 6
    write(raw / "s/nv/30-59/rotated.jpg", encode(gradient(20, 10), "JPEG", exif=exif.tobytes()))
    write(raw / "s/nv/30-59/bomb.png", encode(Image.new("RGB", (300, 300)), "PNG"))
    rows, rejects, _, rc = run_index(tmp_path, raw, extra={"max_pixels": 50_000})
    assert rc == 0
    by_id = {r["image_id"]: r for r in rows}
    assert set(by_id) == {"alpha", "gray16", "cmyk", "rotated"}
    assert (by_id["rotated"]["width"], by_id["rotated"]["height"]) == ("10", "20")
    assert by_id["gray16"]["format"] == "PNG"
    assert len(rejects) == 1 and "too large" in rejects[0]["reason"]
    assert rejects[0]["reason"].endswith("300x300 = 90,000 pixels > limit 50,000")  # header


def manifest_root(tmp_path: Path) -> Path:
    raw = tmp_path / "ham"
    rows = [
        ("L1", "I1", "nv", "45", "vidir"),
        ("L1", "I2", "nv", "45", "vidir"),
        ("L2", "I3", "MEL", "", "rosendahl"),  # upper-case label, blank age
        ("L3", "I4", "bkl", "0", "rosendahl"),  # age 0 means unknown
        ("L4", "I5", "nv", "70", "vidir"),  # file missing
        ("L5", "I6", "scc", "50", "vidir"),  # label outside the class list
        ("L6", "I1", "nv", "20", "vidir"),  # repeated image_id
    ]
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    lines += [
        f"{lesion},{iid},{dx},histo,{age},male,back,{src}" for lesion, iid, dx, age, src in rows
    ]
    write(raw / "metadata.csv", ("\n".join(lines) + "\n").encode())
    for i, iid in enumerate(["I1", "I2", "I3", "I4", "I6"]):
        write(raw / f"images/{iid}.jpg", encode(gradient(40, 30, seed=i), "JPEG"))
    write(raw / "images/EXTRA.jpg", GOOD_JPEG)  # on disk but not in the manifest
    return raw


def test_manifest_layout(tmp_path):
    raw = manifest_root(tmp_path)
    rows, rejects, summary, rc = run_index(tmp_path, raw, layout="manifest")
    assert rc == 0
    got = {
        r["image_id"]: (r["condition"], r["age_group"], r["source"], r["group_id"], r["path"])
        for r in rows
    }
    assert got == {
        "I2": ("nv", "30-59", "vidir", "L1", "images/I2.jpg"),
        "I3": ("mel", "unknown", "rosendahl", "L2", "images/I3.jpg"),
        "I4": ("bkl", "unknown", "rosendahl", "L3", "images/I4.jpg"),
    }
    reasons = {(r["image_id"], r["path"]): r["reason"] for r in rejects}
    assert reasons[("I5", "images/I5.jpg")] == "file listed in manifest is missing"
    assert "label 'scc' not in configured classes" in reasons[("I6", "images/I6.jpg")]
    # I1 is listed twice (same label, other lesion and age): one reject row for the id.
    assert "listed 2 times with the same label but different" in reasons[("I1", "images/I1.jpg")]
    assert reasons[("", "images/EXTRA.jpg")] == "unlisted: no manifest row names this file"
    assert summary["files_found"] == 7 == len(rows) + len(rejects)


def test_manifest_without_source_column_names_the_folder(tmp_path):
    """A manifest with no source column (PAD-UFES-20 has none): the source is the raw_root
    folder's name, so the source gate holds instead of failing on every row."""
    raw = manifest_root(tmp_path)
    rows, _, _, rc = run_index(tmp_path, raw, layout="manifest", extra={"manifest": {"source": ""}})
    assert rc == 0
    assert sorted(r["image_id"] for r in rows) == ["I2", "I3", "I4"]
    assert {r["source"] for r in rows} == {"ham"}


def imagefolder_root(tmp_path: Path) -> Path:
    """A clinic's class folders, one level aged, with a sidecar of ages, patients, sex, site."""
    raw = tmp_path / "clinic"
    for i, rel in enumerate(["nv/p1.jpg", "nv/p2.jpg", "mel/60+/p3.jpg", "mel/p4.png"]):
        write(
            raw / rel, encode(gradient(40, 30, seed=10 + i), "PNG" if rel[-3:] == "png" else "JPEG")
        )
    write(raw / "nv/notes.txt", b"not an image")
    lines = ["file,years,patient,sex,where", "p1.jpg,25,A,f,arm", "p2.jpg,70,A,f,back"]
    lines += ["mel/60+/p3.jpg,66,B,m,face", "ghost.jpg,40,C,m,leg"]
    write(raw / "meta.csv", ("\n".join(lines) + "\n").encode())
    return raw


SIDECAR = {
    "file": "meta.csv",
    "age": "years",
    "patient_id": "patient",
    "sex": "sex",
    "site": "where",
}


def test_imagefolder_layout_with_sidecar(tmp_path):
    raw = imagefolder_root(tmp_path)
    rows, rejects, summary, rc = run_index(
        tmp_path, raw, layout="imagefolder", extra={"sidecar": SIDECAR}
    )
    assert rc == 0
    got = {r["image_id"]: (r["condition"], r["age_group"], r["source"], r["groups"]) for r in rows}
    assert got == {
        "p1": ("nv", "0-29", "clinic", "patient_id=A"),
        "p2": ("nv", "60+", "clinic", "patient_id=A"),
        "p3": ("mel", "60+", "clinic", "patient_id=B"),
        "p4": ("mel", "unknown", "clinic", ""),
    }
    assert [(r["age"], r["sex"], r["site"]) for r in rows if r["image_id"] == "p3"] == [
        ("66", "m", "face")
    ]
    assert [r["path"] for r in rejects] == ["nv/notes.txt"]  # the sidecar itself is not a reject
    assert summary["sidecar_rows_naming_no_file"] == 1  # ghost.jpg
    assert summary["files_found"] == 5 == len(rows) + len(rejects)


def test_imagefolder_without_sidecar_keeps_the_index_columns(tmp_path):
    raw = imagefolder_root(tmp_path)
    rows, _, summary, rc = run_index(tmp_path, raw, layout="imagefolder")
    assert rc == 0 and len(rows) == 4 and "sidecar_rows_naming_no_file" not in summary
    assert list(rows[0]) == list(INDEX_COLUMNS)


def test_no_file_matching_the_layout_names_the_layout_the_tree_looks_like(tmp_path, capsys):
    """802 of 802 clinical photos once came back as rejects one by one; now one line says which
    layout the tree looks like, for each of the folder layouts."""
    raw = imagefolder_root(tmp_path)
    _, _, _, rc = run_index(tmp_path, raw, layout="folders")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "no file matches layout folders" in err[0] and "looks like imagefolder" in err[0]
    _, _, _, rc = run_index(tmp_path / "b", manifest_root(tmp_path / "b"), layout="ham10000")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "looks like manifest (table metadata.csv" in err[-1], err


def test_manifest_missing_column_is_one_line_error(tmp_path, capsys):
    raw = manifest_root(tmp_path)
    _, _, _, rc = run_index(
        tmp_path, raw, layout="manifest", extra={"manifest": {"condition": "diagnosis"}}
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("dermai index: error: manifest metadata.csv lacks column(s)")
    assert "Traceback" not in "\n".join(err)


def test_missing_raw_root_is_one_line_error(tmp_path, capsys):
    _, _, _, rc = run_index(tmp_path, tmp_path / "nowhere")
    assert rc == 1
    assert "raw root is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_ham10000_subset_through_the_manifest_layout(tmp_path, ham10000):
    """A few hundred real HAM10000 images, indexed through the manifest layout with the default
    manifest params: every listed image indexed, labels, lesion groups, sources and age bins
    taken from metadata.csv, and the two byte-identical pairs found by SHA1. The images are
    symlinked into a temp raw root, never copied into the project."""
    import pandas as pd

    meta = pd.read_csv(ham10000 / "metadata.csv", dtype=str, keep_default_na=False)
    identical = [("ISIC_0024366", "ISIC_0029861"), ("ISIC_0024777", "ISIC_0029938")]
    pinned = {i for pair in identical for i in pair}
    pinned |= set(meta.loc[meta["age"].isin(["", "0"]), "image_id"][:10])  # unknown ages
    pinned |= set(meta.loc[meta["lesion_id"] == meta["lesion_id"].iloc[0], "image_id"])
    subset = meta[meta["image_id"].isin(pinned) | (meta.index % 40 == 0)].reset_index(drop=True)
    assert 250 <= len(subset) <= 400
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    for iid in subset["image_id"]:
        (raw / "images" / f"{iid}.jpg").symlink_to(ham10000 / "images" / f"{iid}.jpg")
    subset.to_csv(raw / "metadata.csv", index=False)

    rows, rejects, summary, rc = run_index(tmp_path / "run", raw, layout="manifest")
    assert rc == 0 and rejects == []
    assert summary["files_found"] == summary["indexed"] == len(subset)
    assert summary["by_condition"] == subset["dx"].value_counts().sort_index().to_dict()
    by_id = {r["image_id"]: r for r in rows}
    assert len(by_id) == len(rows) == len(subset)
    for m in subset.to_dict("records"):
        r = by_id[m["image_id"]]
        assert r["path"] == f"images/{m['image_id']}.jpg"
        assert (r["condition"], r["group_id"], r["source"]) == (
            m["dx"],
            m["lesion_id"],
            m["dataset"],
        )
        age = float(m["age"]) if m["age"] else 0.0
        want = "unknown" if age <= 0 else "0-29" if age < 30 else "30-59" if age < 60 else "60+"
        assert r["age_group"] == want, m
        assert (r["width"], r["height"], r["format"]) == ("200", "150", "JPEG")
        assert len(r["sha1"]) == 40 and len(r["dhash"]) == 16
    assert summary["by_age_group"].get("unknown", 0) >= 10
    for a, b in identical:
        assert by_id[a]["sha1"] == by_id[b]["sha1"]
    assert len({r["sha1"] for r in rows}) == len(rows) - len(identical)
