"""Backbone factory: no downloads, clear errors, every backbone takes raw pixels."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from dermai.errors import DermaiError
from dermai.models import lite0
from dermai.models.backbones import (
    N_STAGES,
    BackboneName,
    build_backbone,
    cut_layer_name,
    keras_models_dir,
)
from dermai.params import ModelParams

keras = pytest.importorskip("keras")


def test_keras_home_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_models_dir() == tmp_path / "models"


def test_b0_imagenet_without_local_file_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DermaiError) as exc:
        build_backbone("efficientnet_b0", "imagenet", (64, 64, 3))
    msg = str(exc.value)
    assert str(tmp_path / "models" / "efficientnetb0_notop.h5") in msg and "\n" not in msg


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_b0_loads_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format

    # A stand-in for Keras' own notop file, written in the same legacy h5 layout.
    src = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg"
    )
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / "efficientnetb0_notop.h5", "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, src)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    b0 = build_backbone("efficientnet_b0", "imagenet", (96, 128, 3))
    assert b0.output.shape == (None, 1280)
    np.testing.assert_array_equal(
        b0.get_layer("top_conv").kernel.numpy(), src.get_layer("top_conv").kernel.numpy()
    )


def test_lite0_untrained_non_square() -> None:
    m = build_backbone("efficientnet_lite0", "none", (150, 200, 3))
    out = m.predict(np.full((1, 150, 200, 3), 128.0, np.float32), verbose=0)
    assert out.shape == (1, 1280)


def test_backbone_names_agree() -> None:
    """The param's choices, the factory's names and the Lite table list the same backbones."""
    choices = typing.get_args(typing.get_type_hints(ModelParams)["backbone"])
    assert (
        set(choices) == set(typing.get_args(BackboneName)) == {*lite0.VARIANTS, "efficientnet_b0"}
    )


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_untrained_non_square_and_cut(name: str) -> None:
    m = build_backbone(name, "none", (150, 200, 3))
    out = m.predict(np.full((1, 150, 200, 3), 128.0, np.float32), verbose=0)
    assert out.shape == (1, 1280)
    assert m.name == f"{name}_features"
    # The cut falls after the last block of a stage, whatever its depth-scaled repeats.
    last = {b.prefix[len("block") : -1] for b in lite0.blocks(name)}
    for k in range(1, N_STAGES):
        cut = cut_layer_name(m, k)
        stage = N_STAGES - k
        final = max(x for x in last if x.startswith(str(stage)))
        assert cut is not None and cut.startswith(f"block{final}_")
        assert m.get_layer(cut).output.shape[-1] == lite0.stages(name)[stage - 1].filters_out


def test_lite0_imagenet_needs_the_converted_file() -> None:
    with pytest.raises(DermaiError, match="converted file"):
        build_backbone("efficientnet_lite0", "imagenet", (64, 64, 3))


def test_unknown_names_are_refused() -> None:
    with pytest.raises(DermaiError, match="unknown backbone"):
        build_backbone("resnet", "none", (64, 64, 3))  # type: ignore[arg-type]
    with pytest.raises(DermaiError, match="unknown backbone weights"):
        build_backbone("efficientnet_lite0", "random", (64, 64, 3))  # type: ignore[arg-type]
