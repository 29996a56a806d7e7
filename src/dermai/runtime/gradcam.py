"""Grad-CAM heatmaps for the nested DermAI model, and a colour overlay for showing them.

The trained model is `image -> lower -> [upper] -> head`, each a nested Functional model, so the
last convolutional activation (`top_activation`) is not reachable from the outer graph. The
gradient model is rebuilt here from the same layers (weights shared): image -> (activation of
`top_activation`, pre-softmax logits). Gradients are taken of the class logit, not of its
probability, so a confident prediction still yields a usable map.

An ensemble (`train.ensemble` > 1) is `image -> lower -> members -> head`, each member holding its
own `top_activation`. Its logit is the mean of the members' logits, so the map is Grad-CAM over
the members' activations joined along channels: the sum of each member's gradient-weighted map
(ReLU after the sum), which for one member is the usual Grad-CAM.

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


def _holds(layer: Any, conv_layer: str) -> bool:
    """Whether `layer` is a nested model with a direct layer named `conv_layer`."""
    sub = getattr(layer, "layers", None) or []
    return any(s.name == conv_layer for s in sub)


def _conv_host(model: keras.Model, conv_layer: str) -> tuple[int, keras.Model, list[keras.Model]]:
    """(position in model.layers, nested model, its members) of the sub-model holding
    `conv_layer`. members is [] for a single model; for an ensemble (`train.ensemble` > 1) the
    host is the `members` model, whose nested members each hold their own `conv_layer`."""
    for i, layer in enumerate(model.layers):
        if _holds(layer, conv_layer):
            return i, layer, []
        members = [s for s in getattr(layer, "layers", None) or [] if _holds(s, conv_layer)]
        if members:
            return i, layer, members
    raise ValueError(f"no nested model of {model.name!r} has a layer named {conv_layer!r}")


def _candidates(host: keras.Model, conv_layer: str) -> list[Any]:
    """Output tensors of `conv_layer`, one per node. A sub-model cut from a larger graph (how
    `upper` is built before saving) is a clone whose layers also carry nodes of the original
    graph, so the callers try each and keep the one that belongs to `host`."""
    layer = host.get_layer(conv_layer)
    nodes = getattr(layer, "_inbound_nodes", None) or []
    return [t for n in nodes for t in n.output_tensors[:1]] or [layer.output]


def _split_model(host: keras.Model, conv_layer: str) -> keras.Model:
    """host.input -> [conv activation, host output]."""
    import keras

    for tensor in _candidates(host, conv_layer):
        try:
            return keras.Model(host.inputs, [tensor, host.outputs[0]], name=f"{host.name}_cam")
        except ValueError:
            continue
    raise ValueError(f"cannot connect {conv_layer!r} to the inputs of {host.name!r}")


def _cut_model(host: keras.Model, conv_layer: str) -> tuple[keras.Model, keras.Model]:
    """(host.input -> conv activation, conv activation -> host output)."""
    import keras

    for tensor in _candidates(host, conv_layer):
        try:
            return (
                keras.Model(host.inputs, tensor, name=f"{host.name}_to_conv"),
                keras.Model(tensor, host.outputs[0], name=f"{host.name}_from_conv"),
            )
        except ValueError:
            continue
    raise ValueError(f"cannot cut {host.name!r} at {conv_layer!r}")


def gradient_model(model: keras.Model, conv_layer: str = CONV_LAYER) -> keras.Model:
    """image -> [conv activation, logits], sharing `model`'s weights.

    Works when the conv layer sits inside `upper`, without an upper part inside `lower` (the
    whole backbone), or inside each member of an ensemble's `members` model (the members' maps
    are then joined along channels); the head's softmax is dropped so the logits come out.
    """
    import keras

    from dermai.models.classifier import head_logits, metadata_width

    pos, host, members = _conv_host(model, conv_layer)
    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    x = inp
    for layer in model.layers[1:pos]:
        if not isinstance(layer, keras.layers.InputLayer):  # a metadata input
            x = layer(x)
    if not members:
        conv, x = _split_model(host, conv_layer)(x)
    else:
        # Ensemble: the members' conv activations (same grid) joined along channels, and the
        # members' features joined by the host's own last layer, as the model does. Grad-CAM on
        # the joined channels is the sum of the members' weighted maps for the averaged logit.
        join = host.layers[-1]
        if not isinstance(join, keras.layers.Concatenate) or len(host.layers) != len(members) + 2:
            raise ValueError(f"{host.name!r} is not an ensemble of members joined by Concatenate")
        cuts = [_cut_model(m, conv_layer) for m in members]
        convs = [to_conv(x) for to_conv, _ in cuts]
        conv = keras.layers.Concatenate(axis=-1, name="members_" + conv_layer)(convs)
        c = int(convs[0].shape[-1])  # each member continues from its own slice of `conv`,
        # so the gradient reaches the joined tensor that the map is taken of
        x = join([fc(conv[..., k * c : (k + 1) * c]) for k, (_, fc) in enumerate(cuts)])
    for layer in model.layers[pos + 1 :]:
        if isinstance(layer, keras.layers.InputLayer):
            continue  # the metadata input: see below
        if metadata_width(layer):
            # A head with metadata: its logits are linear in the metadata vector, so the
            # gradient at the conv layer, hence the map, does not depend on it: all zeros.
            m = keras.ops.repeat(keras.ops.zeros_like(x[:, :1]), metadata_width(layer), axis=1)
            x = head_logits(layer)([x, m])
        elif getattr(layer, "layers", None) and any(
            s.name == "probabilities" for s in layer.layers
        ):
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
