"""The pretrained stage: offline conversion to an atomic, byte-reproducible `.weights.h5`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dermai.errors import DermaiError
from dermai.stages import pretrained


def run_stage(tmp_path: Path, out: Path, package: str | None = None) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"pretrained:\n  package: {package}\n" if package else "{}\n")
    p = argparse.ArgumentParser()
    pretrained.add_arguments(p)
    pretrained.run(p.parse_args(["--params", str(params), "--out", str(out)]))


def test_writes_reproducible_weights(tmp_path: Path) -> None:
    out = tmp_path / "models" / "pretrained" / "lite0.weights.h5"
    run_stage(tmp_path, out)
    first = out.read_bytes()
    run_stage(tmp_path, out)
    assert out.read_bytes() == first
    assert len(first) > 18_000_000  # 4.69M float32 values
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp files left


def test_missing_package_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DermaiError, match="not installed"):
        run_stage(tmp_path, tmp_path / "x.weights.h5", package="no_such_weights_package_xyz")
    assert not (tmp_path / "x.weights.h5").exists()


def test_out_must_have_keras_suffix(tmp_path: Path) -> None:
    with pytest.raises(DermaiError, match=r"\.weights\.h5"):
        run_stage(tmp_path, tmp_path / "x.h5")
