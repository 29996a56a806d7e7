"""Conversion proof: the Keras Lite0 with the packaged ImageNet weights recognises real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermai.errors import DermaiError
from dermai.models import lite0

keras = pytest.importorskip("keras")
skdata = pytest.importorskip("skimage.data")

# Lite0 with its 1000-way head: 4,652,008 trainable (the published 4.65M) plus BN moving stats.
LITE0_TRAINABLE = 4_652_008
LITE0_TOTAL = 4_694_024


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return lite0.load_packaged_state()


@pytest.fixture(scope="module")
def model(state: dict[str, np.ndarray]) -> keras.Model:
    m = lite0.build_lite0((224, 224, 3), include_top=True)
    lite0.convert_state_dict(state, m)
    return m


@pytest.fixture(scope="module")
def weights_file(model: keras.Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w") / "lite0.weights.h5"
    lite0.save_weights_atomic(model, path)
    return path


def center_crop(img: np.ndarray, size: int = 224) -> np.ndarray:
    """Shorter side to `size` (bicubic), then a central square: the usual ImageNet eval view."""
    im = Image.fromarray(img)
    scale = size / min(im.size)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)


def top5(model: keras.Model, img: np.ndarray) -> list[int]:
    probs = model.predict(center_crop(img)[None], verbose=0)[0]
    assert probs.shape == (1000,)
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    return [int(i) for i in np.argsort(-probs)[:5]]


def test_cat_is_a_cat(model: keras.Model) -> None:
    assert set(top5(model, skdata.chelsea())) & set(range(281, 286))


def test_coffee_is_coffee(model: keras.Model) -> None:
    assert set(top5(model, skdata.coffee())) & {967, 968}


def test_parameter_count(model: keras.Model) -> None:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == LITE0_TRAINABLE
    assert model.count_params() == LITE0_TOTAL


def test_every_tensor_is_used(state: dict[str, np.ndarray]) -> None:
    mapping = lite0.torch_to_keras_names()
    prefixes = {k.rsplit(".", 1)[0] for k in state if not k.endswith(lite0.IGNORED_SUFFIXES)}
    assert prefixes == set(mapping)
    # Only BN step counters are dropped, and they are all there is to drop.
    dropped = [k for k in state if k.endswith(lite0.IGNORED_SUFFIXES)]
    assert len(dropped) == sum(kind == "bn" for _, kind in mapping.values())


def test_weights_were_transposed_correctly(model: keras.Model, state: dict) -> None:
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel.numpy(),
        state["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("block6d_dwconv").kernel.numpy()[..., 0],
        state["_blocks.14._depthwise_conv.weight"][:, 0].transpose(1, 2, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("predictions").kernel.numpy(), state["_fc.weight"].T
    )
    bn = model.get_layer("top_bn")
    assert bn.epsilon == pytest.approx(1e-3)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state["_bn1.running_var"])


def test_convert_is_strict(state: dict[str, np.ndarray]) -> None:
    small = lite0.build_lite0((32, 32, 3))
    with pytest.raises(DermaiError, match="unmapped: _extra"):
        lite0.convert_state_dict({**state, "_extra.weight": np.zeros(1)}, small)
    missing = dict(state)
    del missing["_blocks.3._bn0.running_mean"]
    with pytest.raises(DermaiError, match="lacks _blocks.3._bn0.running_mean"):
        lite0.convert_state_dict(missing, small)
    with pytest.raises(DermaiError, match="shape"):
        lite0.convert_state_dict(state, lite0.build_lite0((32, 32, 3), classes=10))
    with pytest.raises(DermaiError, match="unmapped: _fc.bias"):
        lite0.convert_state_dict(state, lite0.build_lite0((32, 32, 3), include_top=False))


def test_stride2_convs_use_tf_same_padding(model: keras.Model) -> None:
    strided = [layer for layer in model.layers if getattr(layer, "strides", (1, 1)) != (1, 1)]
    assert [layer.name for layer in strided] == [
        "stem_conv",
        "block2a_dwconv",
        "block3a_dwconv",
        "block4a_dwconv",
        "block6a_dwconv",
    ]
    assert all(layer.padding == "same" for layer in strided)


def test_non_square_backbone_gives_1280_features(model: keras.Model, weights_file: Path) -> None:
    backbone = lite0.load_backbone(weights_file, (150, 200, 3))
    assert backbone.output.shape == (None, 1280)
    x = center_crop(skdata.chelsea())[None, :150, :200]
    feat = backbone.predict(x, verbose=0)
    assert feat.shape == (1, 1280) and np.isfinite(feat).all() and feat.std() > 0
    # Loaded weights are the converted ones, layer for layer, despite the other input size.
    np.testing.assert_array_equal(
        backbone.get_layer("top_conv").kernel.numpy(), model.get_layer("top_conv").kernel.numpy()
    )
    assert backbone.layers[-1].name == "avg_pool"


def test_feature_extractor_from_avg_pool(model: keras.Model) -> None:
    feats = keras.Model(model.input, model.get_layer("avg_pool").output)
    assert feats.output.shape == (None, 1280)


def test_missing_weights_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DermaiError, match="dvc repro pretrained"):
        lite0.load_backbone(tmp_path / "nope.weights.h5", (64, 64, 3))


def test_missing_package_is_one_line_error() -> None:
    with pytest.raises(DermaiError, match="not installed") as exc:
        lite0.load_packaged_state("no_such_weights_package_xyz")
    assert "\n" not in str(exc.value)


def test_hub_hash_is_checked(tmp_path: Path) -> None:
    good = lite0.packaged_weights_path()
    lite0.check_hub_hash(good)
    bad = tmp_path / good.name
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DermaiError, match="does not match its name"):
        lite0.check_hub_hash(bad)
