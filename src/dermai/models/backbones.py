"""Backbone factory: feature extractors taking raw RGB in [0, 255] and returning pooled features,
and where they are cut into a frozen lower and a trainable upper part.

The cut lives here, not with the head, because the `features` stage caches the lower part's
output: head and loss code can change without invalidating that cache.

Nothing here downloads: Lite0/1/2 weights come from the `pretrained` stage's converted file, B0
weights only from a file the user placed in the Keras cache beforehand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dermai.errors import DermaiError
from dermai.models.lite0 import VARIANTS, load_backbone

if TYPE_CHECKING:
    import keras

BackboneName = Literal[
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_b0"
]
WeightsName = Literal["imagenet", "none"]

B0_NOTOP_FILE = "efficientnetb0_notop.h5"
B0_NOTOP_URL = "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"


def keras_models_dir() -> Path:
    """Where Keras caches application weights (`$KERAS_HOME/models`, else `~/.keras/models`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def b0_weights_path() -> Path:
    path = keras_models_dir() / B0_NOTOP_FILE
    if not path.is_file():
        raise DermaiError(
            f"EfficientNet-B0 ImageNet weights not found at {path}; download {B0_NOTOP_URL} "
            "there yourself (the pipeline never downloads), or use model.weights: none"
        )
    return path


def build_backbone(
    name: BackboneName,
    weights: WeightsName,
    input_shape: tuple[int, int, int],
    pretrained_path: str | Path | None = None,
) -> keras.Model:
    """Feature extractor: raw [0, 255] RGB of `input_shape` -> pooled 1280-d features."""
    if weights not in ("imagenet", "none"):
        raise DermaiError(f"unknown backbone weights {weights!r}; use imagenet or none")
    if name in VARIANTS:
        if weights == "imagenet" and pretrained_path is None:
            raise DermaiError(f"{name} with imagenet weights needs the converted file")
        return load_backbone(
            pretrained_path if weights == "imagenet" else None, input_shape, variant=name
        )
    if name == "efficientnet_b0":
        import keras

        path = b0_weights_path() if weights == "imagenet" else None
        # Keras' B0 rescales and normalizes internally, so it also takes raw [0, 255] pixels.
        return keras.applications.EfficientNetB0(
            include_top=False,
            weights=str(path) if path is not None else None,
            input_shape=input_shape,
            pooling="avg",
        )
    raise DermaiError(f"unknown backbone {name!r}; use {', '.join(VARIANTS)} or efficientnet_b0")


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


def split_backbone(
    backbone: keras.Model, unfreeze_blocks: int
) -> tuple[keras.Model, keras.Model | None]:
    """(lower, upper): lower stays frozen; upper holds the stages that phase 2 trains."""
    return split_at(backbone, cut_layer_name(backbone, unfreeze_blocks))


def split_at(backbone: keras.Model, cut: str | None) -> tuple[keras.Model, keras.Model | None]:
    """(lower, upper) cut at layer `cut` (`cut_layer_name`); no cut: the backbone, None."""
    if cut is None:
        return backbone, None
    import keras

    t = backbone.get_layer(cut).output
    return (
        keras.Model(backbone.input, t, name="lower"),
        keras.Model(t, backbone.output, name="upper"),
    )
