"""The index carries metadata columns for model.metadata: a manifest's, named by
index.manifest.sex/site/extra (tiny PAD-UFES-20- and HAM10000-like metadata.csv, in their exact
columns), and the ham10000 preset's own; unset, a manifest's index keeps exactly INDEX_COLUMNS."""

from __future__ import annotations

from pathlib import Path

from test_index import run_index, write

from dermai.core.schema import INDEX_COLUMNS, META_COLUMNS
from imaging import encode, gradient

PAD_HEADER = (
    "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,"
    "skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,"
    "diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"
)
PAD_ROWS = [
    "PAT_1516,1765,,,,,8,,,,,,,,ARM,,,NEV,False,False,False,False,False,False,PAT_1516_1765_530.jpg,False",
    "PAT_46,881,False,False,POMERANIA,POMERANIA,55,False,FEMALE,True,True,True,True,3.0,NECK,6.0,5.0,"
    "BCC,True,True,False,True,True,True,PAT_46_881_939.jpg,True",
    "PAT_46,882,False,False,POMERANIA,POMERANIA,55,False,FEMALE,True,True,True,True,3.0,FACE,6.0,5.0,"
    "BCC,UNK,True,False,True,True,True,PAT_46_882_940.jpg,True",
]
PAD = {
    "index": {
        "manifest": {
            "path_template": "images/{img_id}",
            "image_id": "img_id",
            "condition": "diagnostic",
            "source": "",
            "group_id": "patient_id",
        }
    },
}


def pad_like(tmp: Path) -> Path:
    raw = tmp / "pad"
    for k, line in enumerate(PAD_ROWS):
        name = line.split(",")[-2]
        write(raw / "images" / name, encode(gradient(30, 30, seed=k), "JPEG"))
    (raw / "metadata.csv").write_text("\n".join([PAD_HEADER, *PAD_ROWS]) + "\n")
    return raw


def index(tmp: Path, raw: Path, manifest: dict) -> list[dict]:
    import yaml

    # base.classes stays HAM10000's here (run_index sets index params only): nev -> nv
    extra = {"manifest": {**PAD["index"]["manifest"], **manifest}, "class_map": {"nev": "nv"}}
    (tmp / "p").mkdir(parents=True, exist_ok=True)
    rows, _rejects, _summary, rc = run_index(tmp / "p", raw, "manifest", 1, extra)
    if rc == 0:
        return rows
    raise AssertionError(f"index failed ({rc}); params {yaml.safe_dump(extra)}")


def test_pad_manifest_carries_age_sex_site_and_extra_columns(tmp_path) -> None:
    raw = pad_like(tmp_path)
    rows = index(tmp_path, raw, {"sex": "gender", "site": "region", "extra": ["itch", "bleed"]})
    assert list(rows[0]) == [*INDEX_COLUMNS, *META_COLUMNS, "itch", "bleed"]
    by_id = {r["image_id"]: r for r in rows}
    first = by_id["PAT_1516_1765_530.jpg"]
    assert (first["age"], first["sex"], first["site"], first["itch"]) == ("8", "", "ARM", "False")
    third = by_id["PAT_46_882_940.jpg"]
    assert (third["sex"], third["site"], third["itch"], third["bleed"]) == (
        "FEMALE",
        "FACE",
        "UNK",
        "True",
    )


def test_a_manifest_without_metadata_columns_keeps_the_index_columns(tmp_path) -> None:
    rows = index(tmp_path, pad_like(tmp_path), {})
    assert list(rows[0]) == list(INDEX_COLUMNS)


def test_a_missing_metadata_column_is_a_one_line_error(tmp_path, capsys) -> None:
    raw = pad_like(tmp_path)
    extra = {"manifest": {**PAD["index"]["manifest"], "site": "localization"}, "class_map": {}}
    _, _, _, rc = run_index(tmp_path / "p", raw, "manifest", 1, extra)
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lacks column(s) site->localization" in err, err


def test_ham10000_preset_carries_sex_and_localization(tmp_path) -> None:
    raw = tmp_path / "ham"
    (raw / "HAM10000_images_part_1").mkdir(parents=True)
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    for k, (sex, site) in enumerate([("male", "scalp"), ("unknown", "back"), ("female", "")]):
        write(
            raw / "HAM10000_images_part_1" / f"ISIC_{k:07d}.jpg",
            encode(gradient(40, 30, seed=k), "JPEG"),
        )
        lines.append(f"HAM_{k:07d},ISIC_{k:07d},nv,histo,{40 + k * 5},{sex},{site},vidir")
    (raw / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    rows, _, _, rc = run_index(tmp_path / "p", raw, "ham10000", 1)
    assert rc == 0
    assert list(rows[0]) == [*INDEX_COLUMNS, *META_COLUMNS]
    got = [(r["age"], r["sex"], r["site"]) for r in sorted(rows, key=lambda r: r["image_id"])]
    assert got == [("40", "male", "scalp"), ("45", "unknown", "back"), ("50", "female", "")]
