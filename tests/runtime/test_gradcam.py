"""Grad-CAM on the nested model: wiring (upper / no upper, real Lite0), shape, range, overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import tinymodel
from dermai.runtime.gradcam import GradCam, colorize, gradcam, overlay

CLASSES = ["bcc", "mel", "nv"]


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.stack([np.asarray(tinymodel.tinted(i, 32, 24), np.float32) for i in range(6)])


@pytest.mark.parametrize("with_upper", [True, False])
def test_heatmap_shape_range_and_logits(batch, with_upper):
    from dermai.runtime.inference import logits_model

    model = tinymodel.build(CLASSES, with_upper=with_upper)
    cam = GradCam(model)
    # The gradient model is the same network: identical logits.
    np.testing.assert_allclose(
        cam.model(batch)[1].numpy(), logits_model(model)(batch).numpy(), rtol=1e-5, atol=1e-5
    )
    for c in range(len(CLASSES)):
        heat = cam.heatmap(batch[0], c)
        assert heat.shape == (24, 32) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    maps = cam.heatmaps(batch, [0, 1, 2, 0, 1, 2])
    assert maps.shape == (6, 24, 32)
    assert any(m.max() == pytest.approx(1.0) for m in maps)  # normalised, not all blank
    np.testing.assert_allclose(maps[1], cam.heatmap(batch[1], 1), atol=1e-6)
    np.testing.assert_allclose(gradcam(model, batch[2], 2), maps[2], atol=1e-6)


@pytest.mark.parametrize("unfreeze_blocks", [0, 2])
def test_real_lite0_structure(unfreeze_blocks):
    model = tinymodel.build_lite0(CLASSES, unfreeze_blocks=unfreeze_blocks)
    heat = GradCam(model).heatmap(np.full((24, 32, 3), 120.0, np.float32), 1)
    assert heat.shape == (24, 32) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_overlay_and_colormap():
    img = tinymodel.tinted(0, 40, 30)
    heat = np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16)  # resized to the image
    out = overlay(img, heat, alpha=0.4)
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    assert np.asarray(overlay(img, heat, alpha=0.0)).tolist() == np.asarray(img).tolist()
    c = colorize(np.array([[0.0, 0.5, 1.0]]))
    assert c[0, 0, 2] > c[0, 0, 0] and c[0, 2, 0] > c[0, 2, 2]  # blue -> red


def test_model_without_conv_layer_is_rejected():
    import keras

    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Flatten()(inp))
    with pytest.raises(ValueError, match="top_activation"):
        GradCam(model)


def _raw_map(cam: GradCam, x: np.ndarray, c: int, scale: float = 1.0) -> np.ndarray:
    """Grad-CAM before its ReLU: sum over channels of (mean gradient x activation)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv, z = cam.model(x, training=False)
        score = tf.reduce_sum(z[:, c]) * scale
    g = tape.gradient(score, conv)
    return tf.reduce_sum(tf.reduce_mean(g, axis=(1, 2), keepdims=True) * conv, axis=-1).numpy()


def test_ensemble_map_is_the_sum_of_the_members_maps_for_the_mean_logit(batch, tmp_path):
    """Oracle: the members run apart. The ensemble's logit is their mean, so its map (before
    the ReLU) is the mean of their maps; also after a save and load, as every runtime sees it."""
    import keras

    from dermai.models.classifier import assemble, assemble_ensemble, copy_upper
    from dermai.runtime.inference import logits_model

    a = tinymodel.build(CLASSES, seed=0)
    lower, upper, head0 = a.layers[1:]
    other = tinymodel.build(CLASSES, seed=1)  # a second upper and head, on a's lower part
    upper1 = copy_upper(upper, other.layers[2].get_weights(), "upper_1")
    head1 = other.layers[3]
    members = [
        assemble(lower, u, h, (24, 32, 3), CLASSES) for u, h in ((upper, head0), (upper1, head1))
    ]
    ens = assemble_ensemble(lower, [upper, upper1], [head0, head1], (24, 32, 3), CLASSES)
    loaded = keras.saving.load_model(tinymodel.save(ens, tmp_path, CLASSES), compile=False)
    z = [logits_model(m)(batch).numpy() for m in members]
    assert np.abs(z[0] - z[1]).max() > 0.5  # the members differ: not vacuous
    for model in (ens, loaded):
        cam = GradCam(model)
        np.testing.assert_allclose(cam.model(batch)[1].numpy(), (z[0] + z[1]) / 2, atol=1e-5)
        for c in range(len(CLASSES)):
            want = sum(_raw_map(GradCam(m), batch, c, 0.5) for m in members)
            got = _raw_map(cam, batch, c)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
            assert np.abs(want).max() > 0  # not vacuous
            heat = cam.heatmaps(batch, [c] * len(batch))
            assert heat.shape == (len(batch), 24, 32) and heat.min() >= 0 and heat.max() <= 1
