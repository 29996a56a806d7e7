"""The classifier's structure: a dropout + softmax head on the backbone (cut by
`dermai.models.backbones.split_backbone` into a frozen lower and a trainable upper part), the two
training phases, and the loss.

Kept apart from the training loop so that the bench, the tests and the runtime can build the same
graph that `dermai train` saves without importing a stage.
"""

from __future__ import annotations

import keras
from keras import layers

from dermai import params as params_mod


def build_head(
    feature_dim: int, n_classes: int, dropout: float, weight_decay: float
) -> keras.Model:
    """Dropout + linear logits + a float32 softmax (stable under mixed precision)."""
    x = inp = keras.Input((feature_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(
        n_classes,
        kernel_regularizer=keras.regularizers.l2(weight_decay) if weight_decay else None,
        name="logits",
    )(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inp, out, name="head")


def set_phase(lower: keras.Model, upper: keras.Model | None, head: keras.Model, phase: int) -> None:
    """Phase 1: only the head trains. Phase 2: upper too, with BatchNorm frozen (small batches
    would otherwise overwrite the ImageNet statistics)."""
    lower.trainable = False
    head.trainable = True
    if upper is None:
        return
    upper.trainable = phase == 2
    if phase == 2:
        for layer in upper.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def assemble(
    lower: keras.Model,
    upper: keras.Model | None,
    head: keras.Model,
    input_shape: tuple[int, int, int],
    classes: list[str],
) -> keras.Model:
    """The deployable model: raw [0, 255] RGB in, class probabilities out."""
    inp = keras.Input(input_shape, name="image")
    x = lower(inp)
    if upper is not None:
        x = upper(x)
    return keras.Model(inp, head(x), name="dermai_" + "_".join(classes))


def make_loss(cfg: params_mod.TrainParams) -> keras.losses.Loss:
    """Cross-entropy, or focal loss when `train.imbalance: focal`."""
    if cfg.imbalance == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
