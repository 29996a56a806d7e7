"""Issue 22, labels and layouts fail loudly, each with one line naming the param and its value.

Each case failed on the landed main: `{nv: mel, mel: nv}` swapped labels silently (exit 0), a
chain was applied one step, keys differing in case let the last one win, `base.classes` with a
repeat was accepted, the manifest layout ignored images outside the folders its rows name, a
header-only table exited 0 with no images or said "no files found", and empty or malformed
manifest params ended in `KeyError: ''`, `ValueError: expected '}'` or `IndexError`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from dermai.cli import main
from imaging import encode, gradient

JPEG = encode(gradient(40, 30, seed=1), "JPEG")


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def index(tmp: Path, raw: Path, params: dict, capsys) -> tuple[int, list[str]]:
    params = {**params, "index": {"raw_root": str(raw), "workers": 1, **params.get("index", {})}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    capsys.readouterr()
    rc = main(
        [
            "index",
            "--params",
            str(tmp / "params.yaml"),
            "--out",
            str(tmp / "out" / "index.csv"),
            "--rejects",
            str(tmp / "out" / "rejects.csv"),
            "--summary",
            str(tmp / "out" / "summary.json"),
        ]
    )
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    for i, cond in enumerate(["nv", "mel", "bkl", "a", "b"]):
        write(raw / f"s/{cond}/30-59/x{i}.jpg", JPEG)
    return raw


@pytest.mark.parametrize(
    ("params", "line"),
    [
        (
            {"index": {"class_map": {"nv": "mel", "mel": "nv"}}},
            "params: index.class_map={'nv': 'mel', 'mel': 'nv'} has a cycle (nv -> mel -> nv): "
            "a map is applied once, so it would swap labels silently; map each raw label "
            "straight to its class",
        ),
        (
            {"base": {"classes": []}, "index": {"class_map": {"a": "b", "b": "c"}}},
            "params: index.class_map maps 'a' to 'b', which it maps again (to 'c'): a map is "
            "applied once; map 'a' straight to 'c'",
        ),
        (
            {"index": {"class_map": {"MEL": "nv", "mel": "bkl"}}},
            "params: index.class_map has keys 'MEL' and 'mel' that differ only in case (raw "
            "labels match keys case-insensitively): keep one",
        ),
        (
            {"base": {"classes": ["nv", "nv", "mel", "bkl"]}},
            "params: base.classes=['nv', 'nv', 'mel', 'bkl'] lists 'nv' twice",
        ),
    ],
    ids=["cycle", "chain", "case-collision", "duplicate-class"],
)
def test_label_params_are_one_line_errors(tmp_path, folders, capsys, params, line):
    rc, err = index(tmp_path, folders, params, capsys)
    assert rc == 1 and err == [f"dermai index: error: {line}"]


def manifest_root(tmp: Path, rows: int, stray: int) -> Path:
    """`rows` listed images under images/, `stray` more elsewhere that no row names."""
    raw = tmp / "raw"
    lines = ["image_id,dx,age,dataset,lesion_id"]
    for i in range(rows):
        write(raw / f"images/I{i}.jpg", JPEG)
        lines.append(f"I{i},nv,40,vidir,L{i}")
    for i in range(stray):
        write(raw / f"extra/part{i % 2}/S{i}.jpg", JPEG)
    (raw / "metadata.csv").write_text("\n".join(lines) + "\n")
    return raw


def test_files_no_manifest_row_names_are_counted_and_listed_as_unlisted(tmp_path, capsys):
    raw = manifest_root(tmp_path, rows=6, stray=4)
    rc, _ = index(tmp_path, raw, {"index": {"layout": "manifest"}}, capsys)
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["indexed"] == 6 and summary["unlisted"] == 4
    assert summary["rejects_by_reason"] == {"unlisted": 4}
    with open(tmp_path / "out" / "rejects.csv", newline="") as fh:
        got = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    assert got == {
        f"extra/part{i % 2}/S{i}.jpg": "unlisted: no manifest row names this file" for i in range(4)
    }


def test_a_header_only_manifest_is_a_one_line_error(tmp_path, capsys):
    raw = manifest_root(tmp_path, rows=6, stray=0)
    (raw / "metadata.csv").write_text("image_id,dx,age,dataset,lesion_id\n")
    rc, err = index(tmp_path, raw, {"index": {"layout": "manifest"}}, capsys)
    assert rc == 1
    assert err == [
        f"dermai index: error: {raw / 'metadata.csv'} has a header but no rows: "
        "no image is labelled"
    ]


@pytest.mark.parametrize("content", ["", "image_id\tdx\tage\tdataset\tlesion_id\n"])
def test_an_empty_or_header_only_ham_metadata_is_a_one_line_error(tmp_path, capsys, content):
    raw = tmp_path / "raw"
    write(raw / "HAM10000_images_part_1/ISIC_0000001.jpg", JPEG)
    (raw / "HAM10000_metadata.tab").write_text(content)
    rc, err = index(tmp_path, raw, {"index": {"layout": "ham10000"}}, capsys)
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"dermai index: error: {raw / 'HAM10000_metadata.tab'} ")
    assert err[0].endswith(
        (
            "has a header but no rows: no image is labelled",
            "is empty: a labels table needs a header and rows",
        )
    )


@pytest.mark.parametrize(
    ("manifest", "line"),
    [
        ({"image_id": ""}, "params: index.manifest.image_id='': each must be a non-empty string"),
        (
            {"condition": " "},
            "params: index.manifest.condition=' ': each must be a non-empty string",
        ),
        (
            {"path_template": "images/{image_id.jpg"},
            "params: index.manifest.path_template='images/{image_id.jpg' is not a valid "
            "template: expected '}' before end of string",
        ),
        (
            {"path_template": "images/{}.jpg"},
            "params: index.manifest.path_template='images/{}.jpg' has the field {}: use "
            "{column} with a manifest column name",
        ),
        (
            {"path_template": "images/all.jpg"},
            "params: index.manifest.path_template='images/all.jpg' names no column: every row "
            "would point at one file",
        ),
    ],
    ids=["empty-id-column", "blank-label-column", "unclosed-brace", "positional", "no-field"],
)
def test_manifest_params_are_one_line_errors_naming_param_and_value(
    tmp_path, capsys, manifest, line
):
    raw = manifest_root(tmp_path, rows=3, stray=0)
    rc, err = index(tmp_path, raw, {"index": {"layout": "manifest", "manifest": manifest}}, capsys)
    assert rc == 1 and err == [f"dermai index: error: {line}"]


def test_manifest_rows_naming_one_file_are_one_image_or_a_conflict(tmp_path, capsys):
    """Paths are resolved once (NFC, `./`, `..`): two ids naming one file were indexed twice."""
    raw = tmp_path / "raw"
    for name in ("a.jpg", "c.jpg", "na\u00efve.jpg"):
        write(raw / "images" / name, JPEG)
    (raw / "metadata.csv").write_text(
        "image_id,file,dx\n"
        "A,a.jpg,nv\nB,./a.jpg,nv\n"  # one file, one label: one image
        "C,c.jpg,mel\nD,sub/../c.jpg,nv\n"  # one file, two labels: a conflict
        "E,../../outside.jpg,nv\n"  # leaves the root
        "F,nai\u0308ve.jpg,bkl\n",  # NFD in the table, NFC on disk
        encoding="utf-8",
    )
    manifest = {"path_template": "images/{file}", "age": "", "source": "", "group_id": ""}
    rc, _ = index(tmp_path, raw, {"index": {"layout": "manifest", "manifest": manifest}}, capsys)
    assert rc == 0
    with open(tmp_path / "out" / "index.csv", newline="", encoding="utf-8") as fh:
        rows = {r["image_id"]: r["path"] for r in csv.DictReader(fh)}
    assert rows == {"A": "images/a.jpg", "F": "images/na\u00efve.jpg"}
    with open(tmp_path / "out" / "rejects.csv", newline="", encoding="utf-8") as fh:
        rejects = {r["image_id"]: r["reason"] for r in csv.DictReader(fh)}
    conflict = "one file listed under ids C, D with different labels: mel, nv"
    assert rejects == {
        "C": conflict,
        "D": conflict,
        "E": "path 'images/../../outside.jpg' leaves the raw root",
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["collapsed_repeats"] == 1 and summary["unlisted"] == 0
