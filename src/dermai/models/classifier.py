"""The classifier's structure: backbone cut into a frozen lower part and a trainable upper part,
a dropout + softmax head, the two training phases, and the loss.

Kept apart from the training loop so that the bench, the tests and the runtime can build the same
graph that `dermai train` saves without importing a stage.
"""

from __future__ import annotations

import keras
from keras import layers

from dermai import params as params_mod
from dermai.errors import DermaiError

N_STAGES = 7  # EfficientNet stages block1..block7


def cut_layer_name(backbone: keras.Model, unfreeze_blocks: int) -> str | None:
    """Name of the layer whose output feeds the first unfrozen stage (None: head only)."""
    if unfreeze_blocks <= 0:
        return None
    if unfreeze_blocks >= N_STAGES:
        return "stem_activation"
    prefix = f"block{N_STAGES - unfreeze_blocks}"
    names = [layer.name for layer in backbone.layers if layer.name.startswith(prefix)]
    if not names:
        raise DermaiError(f"backbone {backbone.name} has no layers named {prefix}*")
    return names[-1]


def split_backbone(backbone: keras.Model, unfreeze_blocks: int) -> tuple[keras.Model,
                                                                         keras.Model | None]:
    """(lower, upper): lower stays frozen; upper holds the stages that phase 2 trains."""
    cut = cut_layer_name(backbone, unfreeze_blocks)
    if cut is None:
        return backbone, None
    t = backbone.get_layer(cut).output
    return (keras.Model(backbone.input, t, name="lower"),
            keras.Model(t, backbone.output, name="upper"))


def build_head(feature_dim: int, n_classes: int, dropout: float,
               weight_decay: float) -> keras.Model:
    """Dropout + linear logits + a float32 softmax (stable under mixed precision)."""
    x = inp = keras.Input((feature_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(n_classes, kernel_regularizer=keras.regularizers.l2(weight_decay)
                     if weight_decay else None, name="logits")(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inp, out, name="head")


def set_phase(lower: keras.Model, upper: keras.Model | None, head: keras.Model,
              phase: int) -> None:
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


def assemble(lower: keras.Model, upper: keras.Model | None, head: keras.Model,
             input_shape: tuple[int, int, int], classes: list[str]) -> keras.Model:
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
            gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
