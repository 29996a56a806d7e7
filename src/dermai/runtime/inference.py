"""The graph-level pieces of inference: a Keras classifier's logits and penultimate features,
test-time augmentation in TF ops, and the calibrated softmax.

`runtime.bundle` assembles them into the one object every runtime analyses images with (which
model, its files, the input fit, temperature, TTA and guard). Test-time augmentation (`core.tta`)
averages the softmax over the views (`tta_outputs`); a .tflite never applies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dermai.core import tta as tta_mod
from dermai.core.calibration import probabilities

if TYPE_CHECKING:
    import keras


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities as float32 (the math is `core.calibration.probabilities`)."""
    return probabilities(logits, temperature).astype(np.float32)


def logits_model(model: keras.Model) -> keras.Model:
    """A Keras model from the same input(s) to the pre-softmax logits (shares weights); a model
    with metadata keeps it as the second input."""
    import keras

    from dermai.models.classifier import METADATA_INPUT, body, head_logits, metadata_width

    head = model.layers[-1]
    if width := metadata_width(model):
        inp = keras.Input(model.inputs[0].shape[1:], name="image")
        meta = keras.Input((width,), name=METADATA_INPUT)
        x = inp
        for layer in body(model):
            x = layer(x)
        return keras.Model([inp, meta], head_logits(head)([x, meta]), name="logits")
    inp = keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in model.layers[1:-1]:
        x = layer(x)
    for layer in head.layers[1:]:
        if layer.name == "probabilities":
            break
        x = layer(x)
    return keras.Model(inp, x, name="logits")


def features_model(model: keras.Model) -> keras.Model:
    """A Keras model from the same image input to the penultimate features (the head's image
    input, without the metadata), which the out-of-distribution guard (`core.ood`,
    Mahalanobis) scores."""
    import keras

    from dermai.models.classifier import body

    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    x = inp
    for layer in body(model):
        x = layer(x)
    return keras.Model(inp, x, name="features")


TRUNK = "trunk"  # the pooled frozen-trunk output's name (Keras and the exported .tflite)


def trunk_output(model: keras.Model, x: Any) -> Any:
    """The frozen lower part's activations (the first nested model: below the cut, ImageNet
    weights, never trained), averaged over space: what the PPCA guard (`core.ood.Ppca`) scores.
    Without a cut (`train.unfreeze_blocks: 0`) the lower part is the whole backbone, already
    pooled."""
    from keras import layers

    t = model.layers[1](x)
    return layers.GlobalAveragePooling2D(name=TRUNK)(t) if len(t.shape) == 4 else t


def trunk_model(model: keras.Model) -> keras.Model:
    """Image -> pooled frozen-trunk features (shares weights with `model`)."""
    import keras

    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    return keras.Model(inp, trunk_output(model, inp), name=TRUNK)


def logits_and_trunk(model: keras.Model) -> keras.Model:
    """Image -> [logits, pooled frozen-trunk features]: what a model with a trunk guard
    exports (the guard's features cost one pooling of an activation the model computes)."""
    import keras

    from dermai.models.classifier import METADATA_INPUT, metadata_width

    lm = logits_model(model)
    inp = keras.Input(model.inputs[0].shape[1:], name="image")
    if width := metadata_width(model):
        meta = keras.Input((width,), name=METADATA_INPUT)
        outs = [lm([inp, meta]), trunk_output(model, inp)]
        return keras.Model([inp, meta], outs, name="logits_and_trunk")
    return keras.Model(inp, [lm(inp), trunk_output(model, inp)], name="logits_and_trunk")


def features_and_logits(model: keras.Model) -> keras.Model:
    """One Keras model, image -> [penultimate features, logits]: the OOD guard's inputs."""
    import keras

    from dermai.models.classifier import METADATA_INPUT, head_logits, metadata_width

    fm = features_model(model)
    head = model.layers[-1]
    if width := metadata_width(model):
        meta = keras.Input((width,), name=METADATA_INPUT)
        logits = head_logits(head)([fm.output, meta])
        return keras.Model([fm.input, meta], [fm.output, logits], name="features_and_logits")
    x = fm.output
    for layer in head.layers[1:]:
        if layer.name == "probabilities":
            break
        x = layer(x)
    return keras.Model(fm.input, [fm.output, x], name="features_and_logits")


def tta_view(x: Any, view: tta_mod.View) -> Any:
    """`core.tta.apply` in TF ops (eager on numpy, or inside a tf.function)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if view.flip:
        x = tf.reverse(x, axis=[2])
    return tf.image.rot90(x, view.turns) if view.turns else x


def tta_outputs(logits_fn: Callable[[Any], Any], x: Any, views: Sequence[tta_mod.View]) -> Any:
    """(logits of view 0, the TTA logits) for a raw [0, 255] batch: the TTA logits are the log
    of the mean softmax over the views, so softmax(them / T) is the temperature-scaled average
    and the temperature is fitted on them like on plain logits. One view gives plain logits."""
    import tensorflow as tf

    zs = [tf.cast(logits_fn(tta_view(x, v)), tf.float32) for v in views]
    if len(zs) == 1:
        return zs[0], zs[0]
    lp = tf.nn.log_softmax(tf.stack(zs), axis=-1)
    return zs[0], tf.reduce_logsumexp(lp, axis=0) - math.log(len(zs))


class TtaLogits:
    """A Keras-like logits callable `(x, training=False)` giving the TTA logits of `mode`:
    what `dermai evaluate` predicts the val and test splits with."""

    def __init__(self, logits_model: Any, mode: str) -> None:
        h, w = (int(d) for d in logits_model.input_shape[1:3])
        self.model, self.views = logits_model, tta_mod.views(mode, h, w)

    def __call__(self, x: Any, training: bool = False) -> Any:
        return tta_outputs(lambda v: self.model(v, training=training), x, self.views)[1]


def with_tta(logits_model: Any, mode: str) -> Any:
    """`logits_model` itself for tta none (unchanged outputs), else its `TtaLogits`."""
    return logits_model if tta_mod.check_mode(mode) == "none" else TtaLogits(logits_model, mode)
