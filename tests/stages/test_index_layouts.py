"""Each dataset preset on a tiny synthetic copy of its exact download layout, file names and
column names: classes, ages, groups, image types and every reject reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from dermai.cli import main
from imaging import encode, gradient


def jpeg(seed: int) -> bytes:
    return encode(gradient(40, 30, seed=seed), "JPEG")


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def run_index(
    tmp: Path, raw: Path, layout: str, base: dict | None = None, **index: object
) -> tuple[dict, dict, dict]:
    """(rows by image_id, rejects by (path, image_id), summary) of one index run."""
    params = {
        "base": base or {},
        "index": {"raw_root": str(raw), "layout": layout, "workers": 1, **index},
    }
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
            "--classes",
            str(out / "classes.json"),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader((out / "index.csv").read_text().splitlines()))
    rejects = list(csv.DictReader((out / "rejects.csv").read_text().splitlines()))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files_found"] == len(rows) + len(rejects)
    assert len({r["image_id"] for r in rows}) == len(rows)
    assert json.loads((out / "classes.json").read_text())["classes"] == summary["classes"]
    return (
        {r["image_id"]: r for r in rows},
        {(r["path"], r["image_id"]): r["reason"] for r in rejects},
        summary,
    )


# --- HAM10000 as downloaded: metadata + two part folders --------------------------------------

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]
HAM_ROWS = [
    ["HAM_0000118", "ISIC_0027419", "bkl", "histo", "80.0", "male", "scalp", "vidir_modern"],
    ["HAM_0000118", "ISIC_0025030", "bkl", "histo", "80.0", "male", "scalp", "vidir_modern"],
    ["HAM_0002730", "ISIC_0026769", "mel", "histo", "", "male", "scalp", "rosendahl"],
    ["HAM_0001466", "ISIC_0031633", "nv", "consensus", "35.0", "female", "ear", "vienna_dias"],
    ["HAM_0001466", "ISIC_0031633", "nv", "consensus", "35.0", "female", "ear", "vienna_dias"],
    ["HAM_0002761", "ISIC_0029176", "nv", "follow_up", "45.0", "male", "face", "vidir_molemax"],
    ["HAM_0002761", "ISIC_0029176", "mel", "follow_up", "45.0", "male", "face", "vidir_molemax"],
    ["HAM_0005132", "ISIC_0025837", "bcc", "histo", "70.0", "female", "back", "rosendahl"],
]


def ham_root(tmp: Path, table: str) -> Path:
    raw = tmp / "HAM10000"
    if table.endswith(".tab"):  # Dataverse: tab-separated, quoted strings
        lines = ["\t".join(f'"{c}"' for c in HAM_HEADER)]
        lines += ["\t".join(f'"{c}"' for c in r) for r in HAM_ROWS]
    else:
        lines = [",".join(HAM_HEADER)] + [",".join(r) for r in HAM_ROWS]
    write(raw / table, "\n".join(lines) + "\n")
    write(raw / "HAM10000_images_part_1/ISIC_0027419.jpg", jpeg(1))
    write(raw / "HAM10000_images_part_1/ISIC_0025030.jpg", jpeg(2))
    write(raw / "HAM10000_images_part_2/ISIC_0026769.jpg", jpeg(3))
    write(raw / "HAM10000_images_part_2/ISIC_0031633.jpg", jpeg(4))
    write(raw / "HAM10000_images_part_2/ISIC_0029176.jpg", jpeg(5))
    # ISIC_0025837 (bcc) has no image; ISIC_0099999 has no label.
    write(raw / "HAM10000_images_part_2/ISIC_0099999.jpg", jpeg(6))
    return raw


@pytest.mark.parametrize("table", ["HAM10000_metadata.csv", "HAM10000_metadata.tab"])
def test_ham10000_official_layout(tmp_path, table):
    rows, rejects, summary = run_index(tmp_path, ham_root(tmp_path, table), "ham10000")
    got = {
        k: (r["condition"], r["age_group"], r["source"], r["group_id"], r["groups"], r["path"])
        for k, r in rows.items()
    }
    assert got == {
        "ISIC_0027419": (
            "bkl",
            "60+",
            "vidir_modern",
            "HAM_0000118",
            "lesion_id=HAM_0000118",
            "HAM10000_images_part_1/ISIC_0027419.jpg",
        ),
        "ISIC_0025030": (
            "bkl",
            "60+",
            "vidir_modern",
            "HAM_0000118",
            "lesion_id=HAM_0000118",
            "HAM10000_images_part_1/ISIC_0025030.jpg",
        ),
        "ISIC_0026769": (
            "mel",
            "unknown",
            "rosendahl",
            "HAM_0002730",
            "lesion_id=HAM_0002730",
            "HAM10000_images_part_2/ISIC_0026769.jpg",
        ),
        # listed twice, identically: collapsed to one row
        "ISIC_0031633": (
            "nv",
            "30-59",
            "vienna_dias",
            "HAM_0001466",
            "lesion_id=HAM_0001466",
            "HAM10000_images_part_2/ISIC_0031633.jpg",
        ),
    }
    assert summary["collapsed_repeats"] == 1
    assert rejects == {
        (
            "HAM10000_images_part_2/ISIC_0029176.jpg",
            "ISIC_0029176",
        ): "image id listed 2 times with different labels: mel, nv",
        ("", "ISIC_0025837"): "listed id has no image file",
        (
            "HAM10000_images_part_2/ISIC_0099999.jpg",
            "ISIC_0099999",
        ): "image has no label (id not listed)",
    }
    assert summary["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


# --- ISIC 2019: one-hot ground truth + metadata, `_downsampled` file names ----------------------


def isic2019_root(tmp: Path) -> Path:
    raw = tmp / "isic2019"
    gt = [
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK",
        "ISIC_0000000,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
        "ISIC_0000001,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
        "ISIC_0000002,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,0.0",
        "ISIC_0000003,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0",
        "ISIC_0000004,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0",
        "ISIC_0000005,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
    ]
    meta = [
        "image,age_approx,anatom_site_general,lesion_id,sex",
        "ISIC_0000000,55.0,anterior torso,,female",
        "ISIC_0000001,30.0,,BCN_0000019,female",
        "ISIC_0000002,,,BCN_0000019,male",
        "ISIC_0000003,85.0,head/neck,HAM_0000001,male",
    ]
    write(raw / "ISIC_2019_Training_GroundTruth.csv", "\n".join(gt) + "\n")
    write(raw / "ISIC_2019_Training_Metadata.csv", "\n".join(meta) + "\n")
    img = raw / "ISIC_2019_Training_Input"
    write(img / "ISIC_0000000.jpg", jpeg(1))
    write(img / "ISIC_0000001_downsampled.jpg", jpeg(2))
    write(img / "ISIC_0000002.jpg", jpeg(3))
    write(img / "ISIC_0000003.jpg", jpeg(4))
    write(img / "ISIC_0000004.jpg", jpeg(5))
    write(img / "ISIC_0000005.jpg", jpeg(6))
    write(img / "LICENSE.txt", "CC-BY-NC")
    return raw


def test_isic2019_onehot_class_map_and_suffix(tmp_path):
    rows, rejects, summary = run_index(
        tmp_path,
        isic2019_root(tmp_path),
        "isic2019",
        base={"classes": []},
        class_map={"SCC": "bcc", "UNK": "drop", "AK": "akiec"},
    )
    got = {
        k: (r["condition"], r["age_group"], r["group_id"], r["path"].split("/")[-1])
        for k, r in rows.items()
    }
    assert got == {
        "ISIC_0000000": ("nv", "30-59", "", "ISIC_0000000.jpg"),
        "ISIC_0000001": ("mel", "30-59", "BCN_0000019", "ISIC_0000001_downsampled.jpg"),
        "ISIC_0000002": ("akiec", "unknown", "BCN_0000019", "ISIC_0000002.jpg"),
        "ISIC_0000003": ("bcc", "60+", "HAM_0000001", "ISIC_0000003.jpg"),
    }
    assert {r["source"] for r in rows.values()} == {"isic2019"}
    assert summary["classes"] == ["akiec", "bcc", "mel", "nv"]
    assert summary["dropped_by_class_map"] == {"unk": 1}
    img = "ISIC_2019_Training_Input/"
    assert rejects == {
        (img + "ISIC_0000004.jpg", "ISIC_0000004"): "label 'unk' dropped by index.class_map",
        (img + "ISIC_0000005.jpg", "ISIC_0000005"): "no class marked in the one-hot table",
        (img + "LICENSE.txt", ""): "unsupported extension '.txt' (allowed: ['.bmp', '.heic', "
        "'.heif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp'])",
    }


def test_isic2019_without_class_map_rejects_labels_outside_classes(tmp_path):
    rows, rejects, _ = run_index(tmp_path, isic2019_root(tmp_path), "isic2019")
    assert set(rows) == {"ISIC_0000000", "ISIC_0000001"}  # nv, mel are HAM classes
    assert (
        "label 'ak' not in configured classes"
        in rejects[("ISIC_2019_Training_Input/ISIC_0000002.jpg", "ISIC_0000002")]
    )


# --- ISIC 2020: train.csv, patient-level groups ------------------------------------------------


def test_isic2020_patient_groups(tmp_path):
    raw = tmp_path / "isic2020"
    write(
        raw / "train.csv",
        "\n".join(
            [
                "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,"
                "benign_malignant,target",
                "ISIC_2637011,IP_7279968,male,45.0,head/neck,unknown,benign,0",
                "ISIC_0015719,IP_3075186,female,45.0,upper extremity,unknown,benign,0",
                "ISIC_0052212,IP_2842074,female,50.0,lower extremity,nevus,benign,0",
                "ISIC_0068279,IP_7279968,male,45.0,head/neck,melanoma,malignant,1",
            ]
        )
        + "\n",
    )
    for k, name in enumerate(["ISIC_2637011", "ISIC_0015719", "ISIC_0052212", "ISIC_0068279"]):
        write(raw / f"train/{name}.jpg", jpeg(k))
    rows, rejects, summary = run_index(
        tmp_path,
        raw,
        "isic2020",
        base={"classes": []},
        class_map={"nevus": "nv", "melanoma": "mel", "unknown": "drop"},
    )
    assert {k: (r["condition"], r["age_group"], r["groups"]) for k, r in rows.items()} == {
        "ISIC_0052212": ("nv", "30-59", "patient_id=IP_2842074"),
        "ISIC_0068279": ("mel", "30-59", "patient_id=IP_7279968"),
    }
    assert summary["dropped_by_class_map"] == {"unknown": 2}
    assert len(rejects) == 2 and summary["classes"] == ["mel", "nv"]


# --- ISIC Archive gallery export: lesion + patient groups, image types --------------------------


def archive_root(tmp: Path) -> Path:
    raw = tmp / "archive"
    write(
        raw / "metadata.csv",
        "\n".join(
            [
                "isic_id,attribution,copyright_license,age_approx,anatom_site_general,diagnosis,"
                "image_type,lesion_id,patient_id",
                "ISIC_0000100,Hospital A,CC-BY,40,torso,nevus,dermoscopic,IL_1,IP_1",
                "ISIC_0000101,Hospital A,CC-BY,40,torso,nevus,clinical: close-up,IL_1,IP_1",
                "ISIC_0000102,Hospital B,CC-0,65,,melanoma,dermoscopic,IL_2,IP_1",
                "ISIC_0000103,Hospital B,CC-0,,,melanoma,dermoscopic,,",
            ]
        )
        + "\n",
    )
    for k in range(4):
        write(raw / f"ISIC_000010{k}.jpg", jpeg(k))
    return raw


def test_isic_archive_groups_and_image_types(tmp_path):
    cmap = {"nevus": "nv", "melanoma": "mel"}
    rows, rejects, summary = run_index(
        tmp_path, archive_root(tmp_path), "isic_archive", base={"classes": []}, class_map=cmap
    )
    assert {
        k: (r["condition"], r["age_group"], r["source"], r["groups"], r["image_type"])
        for k, r in rows.items()
    } == {
        "ISIC_0000100": (
            "nv",
            "30-59",
            "Hospital A",
            "lesion_id=IL_1;patient_id=IP_1",
            "dermoscopic",
        ),
        "ISIC_0000101": (
            "nv",
            "30-59",
            "Hospital A",
            "lesion_id=IL_1;patient_id=IP_1",
            "clinical: close-up",
        ),
        "ISIC_0000102": (
            "mel",
            "60+",
            "Hospital B",
            "lesion_id=IL_2;patient_id=IP_1",
            "dermoscopic",
        ),
        "ISIC_0000103": ("mel", "unknown", "Hospital B", "", "dermoscopic"),
    }
    assert rejects == {} and summary["by_image_type"] == {"clinical: close-up": 1, "dermoscopic": 3}

    rows, rejects, summary = run_index(
        tmp_path,
        archive_root(tmp_path),
        "isic_archive",
        base={"classes": []},
        class_map=cmap,
        image_types=["dermoscopic"],
        group_keys=["patient_id"],
    )
    assert set(rows) == {"ISIC_0000100", "ISIC_0000102", "ISIC_0000103"}
    assert rows["ISIC_0000100"]["groups"] == "patient_id=IP_1"
    assert summary["dropped_by_image_type"] == {"clinical: close-up": 1}
    assert rejects[("ISIC_0000101.jpg", "ISIC_0000101")].startswith(
        "image_type 'clinical: close-up' not in index.image_types"
    )


def test_preset_table_missing_is_one_line_error(tmp_path, capsys):
    raw = tmp_path / "empty"
    write(raw / "x.jpg", jpeg(1))
    pfile = tmp_path / "p.yaml"
    pfile.write_text(yaml.safe_dump({"index": {"raw_root": str(raw), "layout": "isic2019"}}))
    rc = main(
        [
            "index",
            "--params",
            str(pfile),
            "--out",
            str(tmp_path / "i.csv"),
            "--rejects",
            str(tmp_path / "r.csv"),
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert rc == 1
    assert "none of ISIC_2019_Training_GroundTruth.csv found" in capsys.readouterr().err


def test_class_map_target_outside_base_classes_is_an_error(tmp_path, capsys):
    raw = archive_root(tmp_path)
    pfile = tmp_path / "p.yaml"
    pfile.write_text(
        yaml.safe_dump(
            {
                "index": {
                    "raw_root": str(raw),
                    "layout": "isic_archive",
                    "class_map": {"nevus": "mole"},
                }
            }
        )
    )
    rc = main(
        [
            "index",
            "--params",
            str(pfile),
            "--out",
            str(tmp_path / "i.csv"),
            "--rejects",
            str(tmp_path / "r.csv"),
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert rc == 1
    assert "index.class_map maps to ['mole'], not in base.classes" in capsys.readouterr().err
