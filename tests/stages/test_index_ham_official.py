"""Real data: the official HAM10000 download layout indexes like today's prepared manifest copy.

Rebuilds the official layout (`HAM10000_metadata.csv`, `HAM10000_images_part_1/`, `_part_2/`)
from ../shared/data/ham10000 with symlinks in a temp folder (nothing copied into the repo).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from dermai.cli import main

HAM = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ham10000"

pytestmark = pytest.mark.slow


def index(tmp: Path, raw: Path, layout: str) -> tuple[list[dict], dict]:
    pfile = tmp / f"{layout}.yaml"
    pfile.write_text(yaml.safe_dump({"index": {"raw_root": str(raw), "layout": layout}}))
    out = tmp / layout
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
    assert rc == 0
    rows = list(csv.DictReader((out / "index.csv").read_text().splitlines()))
    return rows, json.loads((out / "summary.json").read_text())


@pytest.mark.skipif(not (HAM / "metadata.csv").is_file(), reason="needs ../shared/data/ham10000")
def test_official_layout_gives_the_manifest_rows(tmp_path):
    raw = tmp_path / "HAM10000"
    names = sorted(os.listdir(HAM / "images"))
    for k, name in enumerate(names):
        part = raw / f"HAM10000_images_part_{1 if k < len(names) // 2 else 2}"
        part.mkdir(parents=True, exist_ok=True)
        (part / name).symlink_to((HAM / "images" / name).resolve())
    (raw / "HAM10000_metadata.csv").symlink_to((HAM / "metadata.csv").resolve())

    official, s_off = index(tmp_path, raw, "ham10000")
    prepared, s_man = index(tmp_path, HAM.resolve(), "manifest")
    assert s_off["indexed"] == s_man["indexed"] == 10015
    assert s_off["rejected"] == s_man["rejected"] == 0

    def key(rows: list[dict]) -> list[dict]:
        return sorted(
            ({**r, "path": Path(r["path"]).name} for r in rows), key=lambda r: r["image_id"]
        )

    assert key(official) == key(prepared)
    parts = {Path(r["path"]).parent.name for r in official}
    assert parts == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
