"""Tiny untrained models with the real nesting (image -> lower -> [upper] -> head), saved like
`dermai train` saves one (model.keras + train_params.json).

`build` uses a few-layer stand-in backbone (built in milliseconds, with outputs that vary with
the input); `build_lite0` uses the real Lite0 graph with `model.weights: none`, whose untrained
features are ~0, so it is only good for structural checks such as Grad-CAM wiring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dermai import DISCLAIMER

H, W = 24, 32


def build(
    classes: list[str], *, with_upper: bool = True, h: int = H, w: int = W, seed: int = 0
) -> Any:
    import keras
    from keras import layers

    from dermai.models.classifier import assemble, build_head

    keras.utils.set_random_seed(seed)
    inp = keras.Input((h, w, 3), name="input")
    x = layers.Rescaling(1 / 128.0, offset=-1.0, name="rescaling")(inp)
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(x)
    x = layers.Activation("relu", name="stem_activation")(x)

    def top(t: Any) -> Any:
        t = layers.Conv2D(16, 3, padding="same", name="top_conv")(t)
        t = layers.Activation("relu6", name="top_activation")(t)
        return layers.GlobalAveragePooling2D(name="avg_pool")(t)

    if with_upper:
        lower = keras.Model(inp, x, name="lower")
        t_in = keras.Input(x.shape[1:], name="cut")
        upper = keras.Model(t_in, top(t_in), name="upper")
    else:
        lower, upper = keras.Model(inp, top(x), name="lower"), None
    head = build_head(16, len(classes), 0.3, 0.0)
    dense = head.get_layer("logits")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 8.0, bias])  # spread the logits: varied, confident mistakes
    return assemble(lower, upper, head, (h, w, 3), classes)


def build_lite0(classes: list[str], unfreeze_blocks: int = 1, h: int = H, w: int = W) -> Any:
    import keras

    from dermai.models.backbones import build_backbone, split_backbone
    from dermai.models.classifier import assemble, build_head

    keras.utils.set_random_seed(0)
    backbone = build_backbone("efficientnet_lite0", "none", (h, w, 3))
    lower, upper = split_backbone(backbone, unfreeze_blocks)
    head = build_head(int(backbone.output.shape[-1]), len(classes), 0.3, 0.0)
    return assemble(lower, upper, head, (h, w, 3), classes)


def save(model: Any, folder: Path, classes: list[str]) -> Path:
    from dermai.models.training import save_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    save_model(model, path)
    h, w = (int(d) for d in model.inputs[0].shape[1:3])
    (folder / "train_params.json").write_text(
        json.dumps(
            {
                "classes": classes,
                "input_shape": [h, w, 3],
                "best_epoch": 0,
                "params": {"model": {"backbone": "tiny-test", "weights": "none"}},
                "disclaimer": DISCLAIMER,
            }
        )
    )
    return path


def tinted(seed: int, w: int = 48, h: int = 36) -> Any:
    """A noisy image of a random tint: enough for `build`'s model to disagree across images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.uniform(0, 255, 3)[None, None, :] + rng.normal(0, 30, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_index(raw: Path, classes: list[str], sources: list[str]) -> Any:
    """One tinted PNG per entry of `sources` under `raw` (<source>/<condition>/<age>/iNNN.png),
    conditions and age groups cycling, and the index rows (a DataFrame) that describe them: the
    inputs the stage tests split by hand."""
    import io

    import pandas as pd

    rows = []
    for k, src in enumerate(sources):
        cond, age = classes[k % len(classes)], ["0-29", "60+"][k % 2]
        rel = f"{src}/{cond}/{age}/i{k:03d}.png"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        tinted(k).save(buf, "PNG")
        (raw / rel).write_bytes(buf.getvalue())
        rows.append(
            {
                "image_id": f"i{k:03d}",
                "path": rel,
                "condition": cond,
                "age_group": age,
                "source": src,
                "group_id": "",
                "leakage_group": f"g{k}",
                "sha1": f"{k:040x}",
            }
        )
    return pd.DataFrame(rows)
