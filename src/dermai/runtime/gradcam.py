"""Grad-CAM heatmaps for the nested DermAI model, and a colour overlay for showing them.

The trained model is `image -> lower -> [upper] -> head`, each a nested Functional model, so the
last convolutional activation (`top_activation`) is not reachable from the outer graph. The
gradient model is rebuilt here from the same layers (weights shared): image -> (activation of
`top_activation`, pre-softmax logits). Gradients are taken of the class logit, not of its
probability, so a confident prediction still yields a usable map.

A heatmap shows where the model looked; it is not an explanation a clinician can rely on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import keras

CONV_LAYER = "top_activation"

__all__ = ["CONV_LAYER", "GradCam", "colorize", "gradcam", "overlay"]


def _conv_host(model: keras.Model, conv_layer: str) -> tuple[int, keras.Model]:
    """(position in model.layers, nested model) of the sub-model holding `conv_layer`."""
    for i, layer in enumerate(model.layers):
        sub = getattr(layer, "layers", None)
        if sub and any(s.name == conv_layer for s in sub):
            return i, layer
    raise ValueError(f"no nested model of {model.name!r} has a layer named {conv_layer!r}")


def _split_model(host: keras.Model, conv_layer: str) -> keras.Model:
    """host.input -> [conv activation, host output].

    A sub-model cut from a larger graph (how `upper` is built before saving) is a clone whose
    layers also carry nodes of the original graph, so try each node of the conv layer and keep
    the one that belongs to `host`.
    """
    import keras

    layer = host.get_layer(conv_layer)
    nodes = getattr(layer, "_inbound_nodes", None) or []
    candidates = [t for n in nodes for t in n.output_tensors[:1]] or [layer.output]
    for tensor in candidates:
        try:
            return keras.Model(host.inputs, [tensor, host.outputs[0]], name=f"{host.name}_cam")
        except ValueError:
            continue
    raise ValueError(f"cannot connect {conv_layer!r} to the inputs of {host.name!r}")


def gradient_model(model: keras.Model, conv_layer: str = CONV_LAYER) -> keras.Model:
    """image -> [conv activation, logits], sharing `model`'s weights.

    Works when the conv layer sits inside `upper` or, without an upper part, inside `lower`
    (the whole backbone); the head's softmax is dropped so the logits come out.
    """
    import keras

    pos, host = _conv_host(model, conv_layer)
    split = _split_model(host, conv_layer)
    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    x = inp
    for layer in model.layers[1:pos]:
        x = layer(x)
    conv, x = split(x)
    for layer in model.layers[pos + 1 :]:
        if getattr(layer, "layers", None) and any(s.name == "probabilities" for s in layer.layers):
            for s in layer.layers[1:]:
                if s.name == "probabilities":
                    break
                x = s(x)
        elif layer.name != "probabilities":
            x = layer(x)
    return keras.Model(inp, [conv, x], name="gradcam")


class GradCam:
    """Class-specific Grad-CAM heatmaps for one Keras model (built once, reused per image)."""

    def __init__(self, keras_model: keras.Model, conv_layer: str = CONV_LAYER) -> None:
        import tensorflow as tf

        self.model = gradient_model(keras_model, conv_layer)
        self.height, self.width = (int(d) for d in keras_model.inputs[0].shape[1:3])
        self._tf = tf
        self._fn = tf.function(self._maps, reduce_retracing=True)

    def _maps(self, x: Any, class_index: Any) -> tuple[Any, Any]:
        tf = self._tf
        with tf.GradientTape() as tape:
            conv, logits = self.model(x, training=False)
            score = tf.gather(logits, class_index, axis=1, batch_dims=1)
        grads = tape.gradient(score, conv)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # GAP of gradients
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))
        return cam, logits

    def heatmaps(self, x: np.ndarray, class_index: np.ndarray | list[int]) -> np.ndarray:
        """x: N x H x W x 3 raw RGB [0, 255]; one class per image -> N x H x W in [0, 1]."""
        tf = self._tf
        x = np.asarray(x, dtype=np.float32)
        idx = np.asarray(class_index, dtype=np.int32).reshape(-1)
        cam, _ = self._fn(tf.constant(x), tf.constant(idx))
        cam = tf.image.resize(cam[..., None], (x.shape[1], x.shape[2]), method="bilinear")
        cam = cam.numpy()[..., 0].astype(np.float64)
        out = np.zeros_like(cam, dtype=np.float32)
        for i, c in enumerate(cam):
            c = np.clip(c, 0.0, None)  # ReLU'd already; bilinear resize keeps it >= 0
            top = c.max()
            if top > 0 and np.isfinite(top):
                out[i] = (c / top).astype(np.float32)
        return out

    def heatmap(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """x: H x W x 3 raw RGB [0, 255] -> H x W float32 in [0, 1] for `class_index`."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"expected one H x W x 3 image, got shape {x.shape}")
        return self.heatmaps(x[None], [int(class_index)])[0]


def gradcam(model: keras.Model, x: np.ndarray, class_index: int) -> np.ndarray:
    """One-off heatmap; build a `GradCam` instead when doing many images."""
    return GradCam(model).heatmap(x, class_index)


def colorize(heat: np.ndarray) -> np.ndarray:
    """Jet-like colormap (blue -> cyan -> yellow -> red): H x W in [0, 1] -> H x W x 3 uint8."""
    h = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * h - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * h - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * h - 1.0), 0.0, 1.0)
    return np.round(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def overlay(img: Image.Image, heat: np.ndarray, alpha: float = 0.4) -> Image.Image:
    """Blend the coloured heatmap over `img` (resized to the image if sizes differ)."""
    base = img.convert("RGB")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != (base.height, base.width):
        heat_img = Image.fromarray(np.clip(heat * 255.0, 0, 255).astype(np.uint8), mode="L")
        heat_img = heat_img.resize(base.size, Image.Resampling.BILINEAR)
        heat = np.asarray(heat_img, dtype=np.float32) / 255.0
    colour = Image.fromarray(colorize(heat), mode="RGB")
    return Image.blend(base, colour, float(alpha))
