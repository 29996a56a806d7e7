"""Load a trained model (.keras or .tflite) and predict calibrated class probabilities.

The one place that knows how a model is fed: images are decoded with EXIF orientation applied,
fitted with `core.preprocess.fit` exactly as the TFRecords were, and passed as raw [0, 255] RGB
(the model scales its own input). Temperature scaling, when `calibration.json` sits next to the
model, is applied to the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermai.core.calibration import probabilities
from dermai.core.preprocess import fit
from dermai.errors import DermaiError
from dermai.runtime import loader


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities as float32 (the math is `core.calibration.probabilities`)."""
    return probabilities(logits, temperature).astype(np.float32)


def logits_model(model: Any) -> Any:
    """A Keras model from the same input to the pre-softmax logits (shares weights)."""
    import keras

    head = model.layers[-1]
    inp = keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in model.layers[1:-1]:
        x = layer(x)
    for layer in head.layers[1:]:
        if layer.name == "probabilities":
            break
        x = layer(x)
    return keras.Model(inp, x, name="logits")


@dataclass
class Predictor:
    """Calibrated probabilities for batches of images. Not a diagnosis."""

    path: Path
    classes: list[str]
    height: int
    width: int
    temperature: float = 1.0
    _logits_fn: Any = field(default=None, repr=False)

    def prepare(self, img: Image.Image) -> np.ndarray:
        return np.asarray(fit(img.convert("RGB"), self.height, self.width), dtype=np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._logits_fn(np.asarray(x, dtype=np.float32))

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """x: N x H x W x 3 raw RGB in [0, 255] -> N x classes calibrated probabilities."""
        return softmax(self.logits(x), self.temperature)

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.predict_arrays(np.stack([self.prepare(im) for im in images]))


def _keras_fn(path: Path, train_params: str | Path | None = None
              ) -> tuple[Any, list[str], int, int]:
    model, meta = loader.load_keras(path, train_params)
    h, w, _ = meta["input_shape"]
    lm = logits_model(model)
    return (lambda x: lm.predict(x, batch_size=64, verbose=0)), meta["classes"], h, w


def _tflite_fn(path: Path, num_threads: int | None = None) -> tuple[Any, list[str], int, int]:
    from dermai.runtime.tflite import load_tflite

    return load_tflite(path, num_threads=num_threads)


def tflite_temperature(path: Path) -> float | None:
    """The temperature embedded in an exported .tflite (None if it carries none)."""
    from dermai.runtime.tflite import read_metadata

    t = read_metadata(path).get("temperature")
    return None if t is None else float(t)


def load(path: str | Path, *, num_threads: int | None = None,
         train_params: str | Path | None = None, calibration: str | Path | None = None
         ) -> Predictor:
    """A Predictor for a `.keras` or `.tflite` model file.

    A .tflite's own embedded temperature wins over a calibration file (the .tflite is meant to
    travel alone); `num_threads` applies to .tflite models only. `train_params` and
    `calibration` default to the files beside the model (see `runtime.loader`).
    """
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"model not found: {path}")
    temperature = None
    if path.suffix == ".keras":
        fn, classes, h, w = _keras_fn(path, train_params)
    elif path.suffix == ".tflite":
        fn, classes, h, w = _tflite_fn(path, num_threads)
        temperature = tflite_temperature(path)
    else:
        raise DermaiError(f"unsupported model file {path.name}: use .keras or .tflite")
    if temperature is None:
        temperature = loader.read_temperature(path, calibration)
    return Predictor(path, classes, h, w, temperature, fn)
