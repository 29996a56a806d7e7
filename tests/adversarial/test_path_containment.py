"""Issue 22, paths: ids resolve inside their folder, once; only regular files are opened.

Each case failed on the landed main: an id `sub/../../outside/secret_mel.jpg` scored a file
outside `--images`; one file named three ways counted three times; one file under two labels
counted twice (n = 24 from 21 files); a FIFO named .jpg hung `dermai index`; a .jpg symlink to
/dev/zero ended `index` and a whole `predict` batch with MemoryError. The runs that could hang or
fill memory on the old code go through a subprocess with a timeout and a memory limit.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tinymodel
from dermai.cli import main
from imaging import encode, gradient

CLASSES = ["bcc", "mel", "nv"]
JPEG = encode(gradient(40, 30, seed=1), "JPEG")


def limited(gb: float):
    def apply() -> None:
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def dermai(args: list[str], cwd: Path, timeout: float, gb: float) -> subprocess.CompletedProcess:
    """`dermai ARGS` in a child that may use `gb` of address space and `timeout` seconds."""
    return subprocess.run(
        [sys.executable, "-m", "dermai.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limited(gb),
        check=False,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tinymodel.save(tinymodel.build(CLASSES), tmp_path_factory.mktemp("adv-m"), CLASSES)


def evaluate(model: Path, images: Path, rows: list[tuple[str, str]], tmp: Path) -> int:
    pd.DataFrame(rows, columns=["image", "label"]).to_csv(tmp / "labels.csv", index=False)
    return main(
        [
            "evaluate-external",
            "--params",
            str(tmp / "none.yaml"),
            "--model",
            str(model),
            "--images",
            str(images),
            "--labels",
            str(tmp / "labels.csv"),
            "--out",
            str(tmp / "out"),
        ]
    )


def folder_of(tmp: Path, n: int) -> Path:
    images = tmp / "images"
    (images / "sub").mkdir(parents=True)
    for i in range(n):
        tinymodel.tinted(i).save(images / f"mel_{i}.jpg")
    return images


def metrics(tmp: Path) -> dict:
    return json.loads((tmp / "out" / "metrics.json").read_text())["external"]


def skipped(tmp: Path) -> dict[str, str]:
    df = pd.read_csv(tmp / "out" / "skipped.csv", dtype=str, keep_default_na=False)
    return dict(zip(df["image"], df["error"], strict=True))


def test_an_id_that_leaves_the_images_folder_is_rejected_not_scored(model, tmp_path):
    images = folder_of(tmp_path, 6)
    (tmp_path / "outside").mkdir()
    tinymodel.tinted(99).save(tmp_path / "outside" / "secret_mel.jpg")
    (images / "link_mel.jpg").symlink_to(tmp_path / "outside" / "secret_mel.jpg")
    rows = [(f"mel_{i}", CLASSES[i % 3]) for i in range(6)]
    rows += [("sub/../../outside/secret_mel.jpg", "mel"), ("link_mel.jpg", "mel")]
    assert evaluate(model, images, rows, tmp_path) == 0
    assert metrics(tmp_path)["n"] == 6
    reasons = skipped(tmp_path)
    assert "leaves the images folder" in reasons["sub/../../outside/secret_mel.jpg"]
    assert reasons["link_mel.jpg"].startswith("resolves outside the images folder")


def test_one_file_named_three_ways_is_one_image(model, tmp_path, caplog):
    images = folder_of(tmp_path, 6)
    rows = [(f"mel_{i}", CLASSES[i % 3]) for i in range(6)]
    rows += [("mel_0.jpg", CLASSES[0]), ("./mel_0.jpg", CLASSES[0]), (".\\mel_1", CLASSES[1])]
    assert evaluate(model, images, rows, tmp_path) == 0
    m = metrics(tmp_path)
    assert m["n"] == 6 and m["collapsed_repeats"] == 2
    assert "mel_0 (also mel_0.jpg, ./mel_0.jpg)" in caplog.text


def test_one_file_under_two_labels_is_an_error_naming_its_names(model, tmp_path, capsys):
    images = folder_of(tmp_path, 6)
    rows = [(f"mel_{i}", CLASSES[i % 3]) for i in range(6)] + [("mel_1.jpg", "nv")]
    assert evaluate(model, images, rows, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "dermai evaluate-external: error: labels CSV labels.csv: 1 id(s) listed with "
        "different labels: mel_1 = mel_1.jpg: mel, nv"
    )


def test_unicode_forms_of_one_name_are_one_image(model, tmp_path):
    images = folder_of(tmp_path, 3)
    tinymodel.tinted(50).save(images / "na\u00efve.jpg")  # NFC on disk
    rows = [(f"mel_{i}", CLASSES[i % 3]) for i in range(3)]
    rows += [("nai\u0308ve", "nv"), ("na\u00efve.jpg", "nv")]  # NFD, as macOS spells it
    assert evaluate(model, images, rows, tmp_path) == 0
    assert metrics(tmp_path)["n"] == 4 and metrics(tmp_path)["collapsed_repeats"] == 1


def test_a_folder_named_jpg_is_a_skipped_row(model, tmp_path):
    images = folder_of(tmp_path, 3)
    (images / "dir_mel.jpg").mkdir()
    rows = [(f"mel_{i}", CLASSES[i % 3]) for i in range(3)] + [("dir_mel.jpg", "mel")]
    assert evaluate(model, images, rows, tmp_path) == 0
    assert skipped(tmp_path) == {"dir_mel.jpg": "not a regular file: a folder"}


def index_project(tmp: Path, raw: Path, extra: dict | None = None) -> list[str]:
    params = {"index": {"raw_root": str(raw), "workers": 2, "chunksize": 1, **(extra or {})}}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return [
        "index",
        "--params",
        "params.yaml",
        "--out",
        "out/index.csv",
        "--rejects",
        "out/rejects.csv",
        "--summary",
        "out/summary.json",
    ]


def rejects(tmp: Path) -> dict[str, str]:
    with open(tmp / "out" / "rejects.csv", newline="") as fh:
        return {r["path"]: r["reason"] for r in csv.DictReader(fh)}


def test_index_rejects_fifos_devices_and_oversized_files_without_hanging(tmp_path):
    raw = tmp_path / "raw"
    leaf = raw / "clinic" / "nv" / "30-59"
    leaf.mkdir(parents=True)
    for i in range(3):
        (leaf / f"ok{i}.jpg").write_bytes(JPEG)
    os.mkfifo(leaf / "fifo.jpg")
    (leaf / "zero.jpg").symlink_to("/dev/zero")
    (leaf / "big.jpg").write_bytes(JPEG + b"\0" * 4096)
    args = index_project(tmp_path, raw, {"max_file_bytes": len(JPEG) + 1024})
    done = dermai(args, tmp_path, timeout=60, gb=2)
    assert done.returncode == 0, done.stderr[-2000:]
    got = rejects(tmp_path)
    assert got == {
        "clinic/nv/30-59/big.jpg": f"file too large: {len(JPEG) + 4096:,} bytes > limit "
        f"{len(JPEG) + 1024:,}",
        "clinic/nv/30-59/fifo.jpg": "not a regular file: a FIFO (named pipe)",
        "clinic/nv/30-59/zero.jpg": "not a regular file: a character device",
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["indexed"] == 3 and summary["files_found"] == 6


def test_predict_reports_a_dev_zero_symlink_and_goes_on(model, tmp_path):
    for i in range(2):
        tinymodel.tinted(i).save(tmp_path / f"ok{i}.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.jpg")
    args = ["predict", "--model", str(model), "--out", "preds.csv", "."]
    done = dermai(args, tmp_path, timeout=240, gb=5)
    assert done.returncode == 0, done.stderr[-2000:]
    preds = pd.read_csv(tmp_path / "preds.csv", dtype=str, keep_default_na=False)
    errors = dict(zip(preds["image"].map(lambda p: Path(p).name), preds["error"], strict=True))
    assert errors == {
        "ok0.jpg": "",
        "ok1.jpg": "",
        "pipe.jpg": "not a regular file: a FIFO (named pipe)",
        "zero.jpg": "not a regular file: a character device",
    }
