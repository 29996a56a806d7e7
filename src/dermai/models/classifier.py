"""The classifier's structure: a dropout + softmax head on the backbone (cut by
`dermai.models.backbones.split_backbone` into a frozen lower and a trainable upper part), the two
training phases, and the loss.

Kept apart from the training loop so that the bench, the tests and the runtime can build the same
graph that `dermai train` saves without importing a stage.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers

from dermai import params as params_mod

METADATA_INPUT = "metadata"  # the second input of a model trained with model.metadata


def build_head(
    feature_dim: int, n_classes: int, dropout: float, weight_decay: float, metadata_width: int = 0
) -> keras.Model:
    """Dropout + linear logits + a float32 softmax (stable under mixed precision). With
    `metadata_width` > 0 the head takes a second input, the encoded metadata (core.metadata),
    appended to the pooled features after their dropout (the metadata has its own dropout,
    `train.metadata_dropout`, which sets whole fields to unknown)."""
    x = inp = keras.Input((feature_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    inputs: Any = inp
    if metadata_width:
        meta = keras.Input((metadata_width,), name=METADATA_INPUT)
        x = layers.Concatenate(axis=-1, name="with_metadata")([x, meta])
        inputs = [inp, meta]
    x = layers.Dense(
        n_classes,
        kernel_regularizer=keras.regularizers.l2(weight_decay) if weight_decay else None,
        name="logits",
    )(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, out, name="head")


def metadata_width(model: keras.Model) -> int:
    """The width of a model's (or head's) metadata input; 0 when it has none (or is a layer)."""
    inputs = getattr(model, "inputs", None) or [] if isinstance(model, keras.Model) else []
    return int(inputs[1].shape[-1]) if len(inputs) > 1 else 0


def head_logits(head: keras.Model) -> keras.Model:
    """The head up to its logits (same inputs, shared weights): the softmax dropped."""
    return keras.Model(head.inputs, head.get_layer("logits").output, name="head_logits")


def body(model: keras.Model) -> list[Any]:
    """An assembled model's nested parts between its input(s) and its head, in order (lower,
    [upper]): its layers but the inputs (the metadata input sits among them) and the head."""
    return [la for la in model.layers[:-1] if not isinstance(la, keras.layers.InputLayer)]


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
    """The deployable model: raw [0, 255] RGB in (and, when the head takes metadata, the
    encoded metadata as a second input), class probabilities out."""
    inp = keras.Input(input_shape, name="image")
    x = lower(inp)
    if upper is not None:
        x = upper(x)
    name = "dermai_" + "_".join(classes)
    width = metadata_width(head)
    if not width:
        return keras.Model(inp, head(x), name=name)
    meta = keras.Input((width,), name=METADATA_INPUT)
    return keras.Model([inp, meta], head([x, meta]), name=name)


MEMBERS = "members"  # the ensemble's nested model: cut activation -> members' features, joined
MEMBER_FEATURES = "member_features"  # its last layer: the members' pooled features, concatenated


def copy_upper(upper: keras.Model, weights: list, name: str) -> keras.Model:
    """A fresh copy of the trainable top stages holding `weights` (the upper's weights before
    any member trained), for one more ensemble member. Its layers keep their names (Grad-CAM
    finds `top_activation` in every member); the copy is renamed so members can sit side by side.
    """
    clone = keras.models.clone_model(upper)
    clone.set_weights(weights)
    return keras.Model(clone.input, clone.output, name=name)


def ensemble_top(
    uppers: list[keras.Model | None], heads: list[keras.Model]
) -> tuple[keras.Model | None, keras.Model]:
    """(members, head): K trained (upper, head) members as ONE upper and ONE head whose logits
    are the mean of the members' logits.

    The logits of member k are W_k f_k + b_k, so their mean is one Dense layer on the
    concatenated features [f_1 .. f_K] with kernel [W_1; ..; W_K] / K and bias mean(b_k). The
    result has the single model's shape (image -> lower -> upper -> dropout + Dense + softmax
    head): logits, penultimate features (the concatenation) and the softmax stay where every
    runtime reads them. Without an upper part the members share the pooled features, so the
    mean is one Dense on them with the mean kernel.
    """
    if len(uppers) != len(heads) or not heads:
        raise ValueError("need one upper (or None) per head, and at least one member")
    k = len(heads)
    if k == 1:
        return uppers[0], heads[0]
    dense = [h.get_layer("logits") for h in heads]
    width = metadata_width(heads[0])  # the metadata's kernel rows come last, shared: mean
    kernels = [d.get_weights()[0] for d in dense]
    meta_kernel = sum(w[w.shape[0] - width :] for w in kernels) / k
    kernels = [w[: w.shape[0] - width] for w in kernels]
    bias = sum(d.get_weights()[1] for d in dense) / k
    rate = float(heads[0].get_layer("head_dropout").rate)
    n_classes = int(kernels[0].shape[1])
    if uppers[0] is None:
        head = build_head(int(kernels[0].shape[0]), n_classes, rate, 0.0, width)
        head.get_layer("logits").set_weights(
            [np.concatenate([sum(kernels) / k, meta_kernel]), bias]
        )
        return None, head
    if any(u is None for u in uppers):
        raise ValueError("either every member has an upper part or none has")
    inp = keras.Input(uppers[0].inputs[0].shape[1:], name="cut")
    feats = [u(inp) for u in uppers]  # type: ignore[misc]
    joined = layers.Concatenate(axis=-1, name=MEMBER_FEATURES)(feats)
    members = keras.Model(inp, joined, name=MEMBERS)
    head = build_head(int(joined.shape[-1]), n_classes, rate, 0.0, width)
    head.get_layer("logits").set_weights(
        [np.concatenate([*(w / k for w in kernels), meta_kernel], axis=0), bias]
    )
    return members, head


def assemble_ensemble(
    lower: keras.Model,
    uppers: list[keras.Model | None],
    heads: list[keras.Model],
    input_shape: tuple[int, int, int],
    classes: list[str],
) -> keras.Model:
    """The deployable model of K members sharing `lower` (stored once): `assemble` itself for
    K = 1, else image -> lower -> members -> averaged head (`ensemble_top`)."""
    upper, head = ensemble_top(uppers, heads)
    return assemble(lower, upper, head, input_shape, classes)


@keras.saving.register_keras_serializable(package="dermai")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy on logits shifted by `tau * log(prior)` (Menon et al., 2021, eq. 10).

    The head outputs probabilities, so the logits are recovered as log p (softmax is
    shift-invariant, so log p + tau log prior gives the same softmax as logits + tau log prior).
    Only the loss sees the shift: the model keeps predicting with its own logits, which the
    shifted loss pushes towards the balanced-error optimum.

    Registered with Keras because the saved archive names the training loss in its compile
    config, and Keras resolves it even with `compile=False` (load through
    `archive.load_keras`, which imports this module first).
    """

    def __init__(
        self, prior: list[float], tau: float = 1.0, label_smoothing: float = 0.0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.prior = [float(p) for p in prior]
        self.tau = float(tau)
        self.label_smoothing = float(label_smoothing)
        # An absent class gets a floor, not -inf (it has no samples to push against anyway).
        self._offset = keras.ops.convert_to_tensor(
            [self.tau * math.log(max(p, 1e-12)) for p in self.prior], dtype="float32"
        )

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = keras.ops.log(keras.ops.clip(y_pred, 1e-7, 1.0)) + self._offset
        return keras.losses.categorical_crossentropy(
            y_true, logits, from_logits=True, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "prior": self.prior,
            "tau": self.tau,
            "label_smoothing": self.label_smoothing,
        }


def make_loss(cfg: params_mod.TrainParams, prior: list[float] | None = None) -> keras.losses.Loss:
    """Cross-entropy; focal loss when `train.imbalance: focal`; logit-adjusted cross-entropy
    with the training class `prior` when `train.imbalance: logit_adjust`."""
    if cfg.imbalance == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing
        )
    if cfg.imbalance == "logit_adjust":
        if prior is None:
            raise ValueError("logit_adjust needs the training class prior")
        return LogitAdjustedCrossentropy(
            prior, cfg.logit_adjust_tau, label_smoothing=cfg.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
