"""Conversion proof: the Keras Lite0, Lite1 and Lite2 with their packaged ImageNet weights
recognise real photos, and the width/depth table matches the checkpoints' tensor shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermai.errors import DermaiError
from dermai.models import lite0

keras = pytest.importorskip("keras")
skdata = pytest.importorskip("skimage.data")

# With the 1000-way head: (trainable, total incl. BN moving stats). Trainable matches the
# published sizes (Lite0 4.65M, Lite1 5.42M, Lite2 6.09M).
PARAMS = {
    "efficientnet_lite0": (4_652_008, 4_694_024),
    "efficientnet_lite1": (5_416_680, 5_470_344),
    "efficientnet_lite2": (6_092_072, 6_150_168),
}
LITE0_TRAINABLE, LITE0_TOTAL = PARAMS["efficientnet_lite0"]


@pytest.fixture(scope="module", params=list(lite0.VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def state(variant: str) -> dict[str, np.ndarray]:
    return lite0.load_packaged_state(lite0.VARIANTS[variant].package)


@pytest.fixture(scope="module")
def model(state: dict[str, np.ndarray], variant: str) -> keras.Model:
    r = lite0.VARIANTS[variant].resolution
    m = lite0.build_lite0((r, r, 3), include_top=True, variant=variant)
    lite0.convert_state_dict(state, m, variant=variant)
    return m


@pytest.fixture(scope="module")
def weights_file(
    model: keras.Model, variant: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("w") / f"{variant}.weights.h5"
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
    """ImageNet top-5 class ids, at the model's own input size (each variant's resolution)."""
    probs = model.predict(center_crop(img, model.input.shape[1])[None], verbose=0)[0]
    assert probs.shape == (1000,)
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    return [int(i) for i in np.argsort(-probs)[:5]]


def test_cat_is_a_cat(model: keras.Model) -> None:
    assert set(top5(model, skdata.chelsea())) & set(range(281, 286))


def test_coffee_is_coffee(model: keras.Model) -> None:
    assert set(top5(model, skdata.coffee())) & {967, 968}


def test_parameter_count(model: keras.Model, state: dict, variant: str) -> None:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (trainable, model.count_params()) == PARAMS[variant]
    # The oracle: the checkpoint's own learnable tensors (BN moving stats are not trainable).
    stats = (".running_mean", ".running_var", *lite0.IGNORED_SUFFIXES)
    assert trainable == sum(a.size for k, a in state.items() if not k.endswith(stats))


def test_block_table_matches_checkpoint(state: dict[str, np.ndarray], variant: str) -> None:
    """The width/depth table, checked against the shapes: the checkpoint is the ground truth."""
    found = []
    for pos in range(len({k.split(".")[1] for k in state if k.startswith("_blocks.")})):
        t = f"_blocks.{pos}."
        out_ch, mid = state[t + "_project_conv.weight"].shape[:2]
        kernel = state[t + "_depthwise_conv.weight"].shape[-1]
        in_ch = (
            state[t + "_expand_conv.weight"].shape[1] if t + "_expand_conv.weight" in state else mid
        )
        found.append((kernel, mid // in_ch, in_ch, out_ch))
    table = [(b.kernel, b.expand, b.filters_in, b.filters_out) for b in lite0.blocks(variant)]
    assert found == table
    assert state["_conv_stem.weight"].shape[0] == lite0.STEM_FILTERS  # stem not scaled
    assert state["_conv_head.weight"].shape[0] == lite0.FEATURE_DIM  # head not scaled
    # First and last stage keep one block each at every depth.
    assert [s.repeats for s in lite0.stages(variant)][::6] == [1, 1]


def test_round_filters_matches_the_reference() -> None:
    # Values of the official round_filters (divisor 8): B2/Lite2 (1.1) and B3 (1.2) channels;
    # 16 at 1.2 rounds down to 16 < 90% of 19.2, so it steps up to 24.
    assert [lite0.round_filters(f, 1.1) for f in (16, 24, 40, 80, 112, 192, 320, 1280)] == [
        16,
        24,
        48,
        88,
        120,
        208,
        352,
        1408,
    ]
    assert [lite0.round_filters(f, 1.2) for f in (32, 16, 24, 40, 80, 112, 192, 320)] == [
        40,
        24,
        32,
        48,
        96,
        136,
        232,
        384,
    ]
    assert [lite0.round_repeats(r, 1.1) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]


def test_other_variants_weights_are_refused(state: dict, variant: str) -> None:
    for other in lite0.VARIANTS:
        if other != variant:
            wrong = lite0.build_lite0((32, 32, 3), variant=other)
            with pytest.raises(DermaiError, match="convert:"):
                lite0.convert_state_dict(state, wrong, variant=other)


def test_every_tensor_is_used(state: dict[str, np.ndarray], variant: str) -> None:
    mapping = lite0.torch_to_keras_names(variant=variant)
    prefixes = {k.rsplit(".", 1)[0] for k in state if not k.endswith(lite0.IGNORED_SUFFIXES)}
    assert prefixes == set(mapping)
    # Only BN step counters are dropped, and they are all there is to drop.
    dropped = [k for k in state if k.endswith(lite0.IGNORED_SUFFIXES)]
    assert len(dropped) == sum(kind == "bn" for _, kind in mapping.values())


def test_weights_were_transposed_correctly(model: keras.Model, state: dict, variant: str) -> None:
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel.numpy(),
        state["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
    last6 = [b for b in lite0.blocks(variant) if b.prefix.startswith("block6")][-1]
    assert (last6.prefix, last6.position) == {
        "efficientnet_lite0": ("block6d_", 14),
        "efficientnet_lite1": ("block6e_", 19),
        "efficientnet_lite2": ("block6e_", 19),
    }[variant]
    np.testing.assert_array_equal(
        model.get_layer(last6.prefix + "dwconv").kernel.numpy()[..., 0],
        state[f"_blocks.{last6.position}._depthwise_conv.weight"][:, 0].transpose(1, 2, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("predictions").kernel.numpy(), state["_fc.weight"].T
    )
    bn = model.get_layer("top_bn")
    assert bn.epsilon == pytest.approx(1e-3)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state["_bn1.running_var"])


def test_convert_is_strict() -> None:
    state = lite0.load_packaged_state()
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


def test_non_square_backbone_gives_1280_features(
    model: keras.Model, weights_file: Path, variant: str
) -> None:
    backbone = lite0.load_backbone(weights_file, (150, 200, 3), variant=variant)
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


@pytest.mark.parametrize("package", [v.package for v in lite0.VARIANTS.values()])
def test_hub_hash_is_checked(tmp_path: Path, package: str) -> None:
    good = lite0.packaged_weights_path(package)
    lite0.check_hub_hash(good)
    bad = tmp_path / good.name
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DermaiError, match="does not match its name"):
        lite0.check_hub_hash(bad)
