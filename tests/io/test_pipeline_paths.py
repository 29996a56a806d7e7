"""Pipeline paths come from dvc.yaml's stage commands; missing pieces are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermai.errors import DermaiError
from dermai.io.pipeline import pipeline_file, stage_option

ROOT = Path(__file__).resolve().parents[2]


def test_reads_the_real_dvc_yaml() -> None:
    assert stage_option("train", "--model", ROOT / "dvc.yaml") == "models/model.keras"
    assert stage_option("export", "--int8-out", ROOT / "dvc.yaml").endswith(".tflite")


def test_missing_pieces_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DermaiError, match="no --model given and no dvc.yaml"):
        stage_option("train", "--model")
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: dermai train --x=1\n")
    with pytest.raises(DermaiError, match="stage 'train' has no --model"):
        stage_option("train", "--model")
    assert pipeline_file("train", "--model", "given.keras") == "given.keras"
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: dermai train --model=m.k\n")
    with pytest.raises(DermaiError, match=r"m.k not found .*dvc repro train"):
        pipeline_file("train", "--model", None)
    (tmp_path / "m.k").write_text("")
    assert pipeline_file("train", "--model", None) == "m.k"
