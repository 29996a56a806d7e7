"""The pretrained stage: offline conversion to an atomic, byte-reproducible `.weights.h5` of the
Lite variant that `model.backbone` names."""

from __future__ import annotations

import argparse
import hashlib
import warnings
from pathlib import Path

import pytest

from dermai.errors import DermaiError
from dermai.models import lite0
from dermai.stages import pretrained

# md5 of the default output as dvc.lock recorded it before Lite1/Lite2 existed: the default
# (Lite0) conversion must not change by a byte.
LITE0_MD5 = "97c301cbef2271f8f9e0d21996d6f0db"


def run_stage(tmp_path: Path, out: Path, backbone: str | None = None) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"model:\n  backbone: {backbone}\n" if backbone else "{}\n")
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
    assert hashlib.md5(first).hexdigest() == LITE0_MD5
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp files left


@pytest.mark.parametrize(
    ("backbone", "params"),
    [("efficientnet_lite1", 5_470_344), ("efficientnet_lite2", 6_150_168)],
)
def test_converts_the_chosen_variant(tmp_path: Path, backbone: str, params: int) -> None:
    out = tmp_path / "w.weights.h5"
    run_stage(tmp_path, out, backbone)
    assert len(out.read_bytes()) > 4 * params  # float32 values plus the h5 layout
    # The file loads into that variant's backbone, not into Lite0's.
    feats = lite0.load_backbone(out, (64, 64, 3), variant=backbone)
    assert feats.output.shape == (None, lite0.FEATURE_DIM)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="could not be loaded"):
        warnings.simplefilter("ignore")  # Keras warns once per layer it skips before raising
        lite0.load_backbone(out, (64, 64, 3))


def test_b0_still_gets_the_lite0_file(tmp_path: Path) -> None:
    out = tmp_path / "w.weights.h5"
    run_stage(tmp_path, out, "efficientnet_b0")
    assert hashlib.md5(out.read_bytes()).hexdigest() == LITE0_MD5


def test_missing_package_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = lite0.VARIANTS["efficientnet_lite1"]
    monkeypatch.setitem(
        lite0.VARIANTS, "efficientnet_lite1", v._replace(package="no_such_weights_package_xyz")
    )
    with pytest.raises(DermaiError, match="not installed") as exc:
        run_stage(tmp_path, tmp_path / "x.weights.h5", "efficientnet_lite1")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "x.weights.h5").exists()


def test_out_must_have_keras_suffix(tmp_path: Path) -> None:
    with pytest.raises(DermaiError, match=r"\.weights\.h5"):
        run_stage(tmp_path, tmp_path / "x.h5")
