"""Helpers for the export/serve/browser tests: a tiny model, tiny TFRecords, a live server."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from imaging import write_splits

CLASSES = ["bcc", "mel", "nv"]
H, W = 24, 32
# The temperature embedded in the session's shared tiny LiteRT models (tests/conftest.py).
TEMPERATURE = 1.7


def lesion(condition: str = "mel", seed: int = 0, height: int = 96, width: int = 128) -> Any:
    """A synthetic lesion photo (PIL), never real data."""
    from PIL import Image

    from dermai.core.synth import lesion_image

    return Image.fromarray(lesion_image(condition, np.random.default_rng(seed), height, width))


def representative() -> np.ndarray:
    """Twelve synthetic lesions at the model's size: the int8 calibration set of the shared tiny
    LiteRT models (tests/conftest.py), so a test can convert again and compare bytes."""
    return np.stack(
        [
            np.asarray(lesion(c, seed=i, height=H, width=W), dtype=np.float32)
            for i, c in enumerate(CLASSES * 4)
        ]
    )


def tiny_keras(dest: Path, classes: list[str] | None = None, seed: int = 0) -> Path:
    """An untrained Lite0 model at 24x32, assembled like the train stage does, saved with the
    train_params.json that names its classes."""
    import keras

    from dermai.models.backbones import build_backbone, split_backbone
    from dermai.models.classifier import assemble, build_head
    from dermai.models.training import save_model

    classes = list(classes or CLASSES)
    keras.utils.set_random_seed(seed)
    backbone = build_backbone("efficientnet_lite0", "none", (H, W, 3))
    lower, upper = split_backbone(backbone, 1)
    head = build_head(int(backbone.output.shape[-1]), len(classes), 0.1, 0.0)
    model = assemble(lower, upper, head, (H, W, 3), classes)
    he_init(model, np.random.default_rng(seed))
    path = dest / "model.keras"
    save_model(model, path)
    (dest / "train_params.json").write_text(
        json.dumps({"classes": classes, "input_shape": [H, W, 3]})
    )
    return path


def he_init(model: Any, rng: np.random.Generator) -> None:
    """He-normal conv kernels: Keras' default (Glorot) init lets the signal of an untrained
    50-layer ReLU6 network vanish (logits ~1e-13), which would make parity tests vacuous."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            he_init(layer, rng)
        elif isinstance(
            layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.Dense
        ):
            weights = layer.get_weights()
            k = weights[0]
            fan_in = (
                int(np.prod(k.shape[:-1]))
                if not isinstance(layer, keras.layers.DepthwiseConv2D)
                else int(np.prod(k.shape[:2]))
            )
            weights[0] = rng.normal(0, np.sqrt(2.0 / fan_in), k.shape).astype(k.dtype)
            layer.set_weights(weights)


def tiny_tflite(
    keras_path: Path,
    dest: Path,
    kinds: tuple[str, ...] = ("float32",),
    temperature: float = 1.0,
    representative: np.ndarray | None = None,
) -> dict[str, Path]:
    """Export the tiny model with the export stage's own converter: {kind: .tflite path}."""
    import keras

    from dermai.runtime.bundle import read_train_params
    from dermai.runtime.convert import export_bytes

    model = keras.saving.load_model(keras_path, compile=False)
    classes = read_train_params(keras_path)["classes"]
    if representative is None:
        representative = np.random.default_rng(1).uniform(0, 255, (8, H, W, 3)).astype("float32")
    out = {}
    for kind, blob in export_bytes(model, classes, temperature, representative, kinds).items():
        out[kind] = dest / f"model_{kind}.tflite"
        out[kind].write_bytes(blob)
    return out


def with_temperature(src: Path, dest: Path, temperature: float) -> Path:
    """A copy of the .tflite `src` whose embedded temperature is `temperature`: what
    `tiny_tflite` converts at that temperature (the converted graph does not depend on it; only
    the metadata does), without converting again."""
    from dermai.runtime.tflite import embed_metadata, read_metadata

    blob = src.read_bytes()
    dest.write_bytes(embed_metadata(blob, read_metadata(blob) | {"temperature": temperature}))
    return dest


# `train` params of the stage tests on tiny TFRecords: one plain copy, cut after block1 (deeper,
# the untrained backbone's activations vanish in float16), phase 1 only.
TINY_TRAIN = {
    "cache_variants": 1,
    "unfreeze_blocks": 6,
    "head_epochs": 1,
    "finetune_epochs": 0,
    "lr": 0.05,
    "batch_size": 16,
}


# Patient metadata of image k (`tiny_tfrecords(metadata=True)`): blanks and placeholders for
# unknown, mixed case, and a site ("scalp") on test rows only, which training never sees.
AGES = ["25", "70", "", "45", "n/a", "62"]
SEXES = ["female", "MALE", "", "male", "unknown"]
SITES = ["back", "face", "arm", "", "back"]


def add_metadata(splits: Path) -> None:
    """Give every split CSV the index's metadata columns (age, sex, site), as an index with
    metadata columns writes them."""
    import pandas as pd

    for f in sorted(splits.glob("*.csv")):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        k = [int(i[1:]) for i in df["image_id"]]
        df["age"] = [AGES[j % len(AGES)] for j in k]
        df["sex"] = [SEXES[j % len(SEXES)] for j in k]
        df["site"] = ["scalp" if f.stem == "test" else SITES[j % len(SITES)] for j in k]
        df.to_csv(f, index=False)


def tiny_tfrecords(
    tmp: Path, counts: dict[str, int] | None = None, metadata: bool = False
) -> tuple[Path, Path]:
    """Synthetic lesion images -> splits CSVs (with metadata columns: `add_metadata`) ->
    `dermai tfrecords` (24x32). Returns (tfrecords folder, params.yaml)."""
    from dermai.cli import main

    counts = counts or {"bcc": 8, "mel": 10, "nv": 18}
    raw, sp = write_splits(tmp, counts, lambda cond, k: lesion(cond, seed=k, height=36, width=48))
    if metadata:
        add_metadata(sp)
    prm = tmp / "params.yaml"
    prm.write_text(
        yaml.safe_dump(
            {
                "base": {"classes": sorted(counts)},
                "index": {"raw_root": str(raw), "workers": 1},
                "model": {"weights": "none", "image_height": H, "image_width": W},
                "export": {"representative_images": 12},
            }
        )
    )
    out = tmp / "tfrecords"
    assert main(["tfrecords", "--params", str(prm), "--splits", str(sp), "--out", str(out)]) == 0
    return out, prm


@contextlib.contextmanager
def live_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def fake_npm(root: Path) -> Path:
    """Stand-ins for the LiteRT.js files `export-web` copies (node_modules layout)."""
    from dermai.commands.export_web import WASM

    core, utils = root / "@litertjs" / "core", root / "@litertjs" / "wasm-utils"
    for f in [
        core / "dist" / "index.js",
        utils / "dist" / "index.js",
        core / "wasm" / f"{WASM}.js",
        core / "wasm" / f"{WASM}.wasm",
    ]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"// stand-in " + f.name.encode())
    (core / "package.json").write_text(json.dumps({"version": "9.9.9"}))
    return root
