"""Issue 22, data loss: an output folder never loses a file DermAI did not write.

`dermai export-web --out .` once deleted every file of the current folder; `evaluate-external
--out DIR` deleted the user's plots/custom/*, plots/images/* and report.html in DIR and
overwrote its metrics.json. Each case here failed on the landed main.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import tinymodel
from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]


@pytest.fixture(scope="module")
def tflite(tmp_path_factory) -> Path:
    from deploy import tiny_tflite

    tmp = tmp_path_factory.mktemp("adv-export")
    keras_path = tinymodel.save(tinymodel.build(CLASSES), tmp, CLASSES)
    return tiny_tflite(keras_path, tmp, ("float32",), temperature=1.0)["float32"]


@pytest.fixture(scope="module")
def npm(tmp_path_factory) -> Path:
    from deploy import fake_npm

    return fake_npm(tmp_path_factory.mktemp("adv-npm"))


def user_files(folder: Path) -> dict[str, bytes]:
    """A user's own work in `folder`: what no DermAI command may delete or change."""
    files = {
        "thesis.tex": b"\\documentclass{article}",
        "plots/custom/mine.json": b'{"mine": 1}',
        "plots/images/figure.png": b"\x89PNG not really",
        "report.html": b"<p>my report</p>",
        "metrics.json": b'{"my": "numbers"}',
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def unchanged(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / rel).read_bytes() == data for rel, data in files.items())


def export_web(tflite: Path, npm: Path, out: str) -> int:
    return main(["export-web", "--model", str(tflite), "--out", out, "--npm-dir", str(npm)])


def test_export_web_out_dot_is_refused_and_deletes_nothing(
    tflite, npm, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    files = user_files(work)
    monkeypatch.chdir(work)
    assert export_web(tflite, npm, ".") == 1
    assert unchanged(work, files)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "dermai export-web: error: --out . is the current folder: refusing to write there; "
        "give a folder of its own (e.g. --out results/)"
    ]


@pytest.mark.parametrize("how", ["~", "expanded"])
def test_export_web_out_home_is_refused(tflite, npm, tmp_path, monkeypatch, capsys, how):
    home = tmp_path / "home"
    home.mkdir()
    files = user_files(home)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert export_web(tflite, npm, "~" if how == "~" else str(home)) == 1
    assert unchanged(home, files) and not (tmp_path / "~").exists()
    assert "is the home folder" in capsys.readouterr().err


def test_export_web_into_a_folder_of_other_files_is_refused(tflite, npm, tmp_path, capsys):
    files = user_files(tmp_path / "site")
    assert export_web(tflite, npm, str(tmp_path / "site")) == 1
    assert unchanged(tmp_path / "site", files)
    assert "already holds files that DermAI did not write" in capsys.readouterr().err


def test_export_web_rerun_replaces_its_own_files_and_keeps_the_users(tflite, npm, tmp_path):
    site = tmp_path / "site"
    assert export_web(tflite, npm, str(site)) == 0
    first = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    (site / "index.html").write_text("edited by hand")  # one of ours: replaced
    (site / "robots.txt").write_text("User-agent: *")  # the user's: kept
    assert export_web(tflite, npm, str(site)) == 0
    second = {
        p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()
    }
    assert second.pop("robots.txt") == b"User-agent: *"
    assert second == first
    assert not [p for p in tmp_path.iterdir() if p.name != "site"]  # no temp left beside it


def test_evaluate_external_keeps_the_users_files(tmp_path, capsys):
    model = tinymodel.save(tinymodel.build(CLASSES), tmp_path / "model", CLASSES)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        tinymodel.tinted(i).save(images / f"img{i}.jpg")
    pd.DataFrame({"image": [f"img{i}" for i in range(6)], "label": CLASSES * 2}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    out = tmp_path / "results"
    files = user_files(out)

    def run() -> int:
        return main(
            [
                "evaluate-external",
                "--params",
                str(tmp_path / "none.yaml"),
                "--model",
                str(model),
                "--images",
                str(images),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--out",
                str(out),
            ]
        )

    assert run() == 1
    assert unchanged(out, files)
    assert "already holds files that DermAI did not write" in capsys.readouterr().err
    # Into a folder of its own, then again after the user added a file there.
    out = tmp_path / "ext"
    assert run() == 0
    assert json.loads((out / "metrics.json").read_text())["external"]["n"] == 6
    (out / "plots" / "custom" / "mine.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    assert run() == 0
    assert (out / "plots" / "custom" / "mine.json").read_text() == "{}"
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["external"]["n"] == 6


def test_stage_folder_outputs_refuse_the_current_folder(tmp_path, monkeypatch, capsys):
    """`dermai sample --out .` replaced a folder whole, as export-web did."""
    files = user_files(tmp_path)
    (tmp_path / "p.yaml").write_text(
        "sample: {n_images: 8, width: 16, height: 12, n_exact_copies: 1, "
        "n_near_duplicates: 1, n_corrupt: 1}\n"
    )
    files["p.yaml"] = (tmp_path / "p.yaml").read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--params", "p.yaml", "--out", "."]) == 1
    assert unchanged(tmp_path, files)
    assert "is the current folder" in capsys.readouterr().err
