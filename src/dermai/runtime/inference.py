"""Load a trained model (.keras or .tflite) and predict calibrated class probabilities.

The one place that knows how a model is fed: images are decoded with EXIF orientation applied,
fitted with `core.preprocess.fit` exactly as the TFRecords were, colour-corrected with the
Shades of Grey p the model was trained with (`core.preprocess.prepare`; train_params.json or the
.tflite metadata says which), and passed as raw [0, 255] RGB (the model scales its own input).
Temperature scaling, when `calibration.json` sits next to the model, is applied to the logits.
Test-time augmentation (`core.tta`), when `calibration.json` names a mode, averages the softmax
over the views (`tta_outputs`); a .tflite never applies it (on-device runtimes do not either).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermai.core import preprocess
from dermai.core import tta as tta_mod
from dermai.core.calibration import probabilities
from dermai.errors import DermaiError
from dermai.models import archive
from dermai.runtime import loader

if TYPE_CHECKING:
    import keras

    from dermai.core.ood import Guard

LogitsFn = Callable[[np.ndarray], np.ndarray]
"""Raw RGB batch N x H x W x 3 -> N x classes logits (or N x d features)."""

OOD_FILE = "ood.json"  # the out-of-distribution guard (`core.ood`), written by `dermai evaluate`


def read_tta(model: str | Path, calibration: str | Path | None = None) -> str:
    """The test-time augmentation mode (`core.tta`) the temperature was fitted with: the
    calibration file's `tta` (found as `runtime.loader` finds it), "none" when it names none or
    there is no file. Kept here, not in the loader, so the train stage's code closure (which
    reads the loader) does not change with inference-only logic."""
    f = loader.calibration_path(model, calibration)
    if not f.is_file():
        return "none"
    try:
        mode = json.loads(f.read_text()).get("tta", "none")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise DermaiError(f"{f}: not a calibration document ({exc})") from exc
    if mode not in tta_mod.MODES:
        raise DermaiError(f"{f}: unknown tta {mode!r} (one of {', '.join(tta_mod.MODES)})")
    return str(mode)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probabilities as float32 (the math is `core.calibration.probabilities`)."""
    return probabilities(logits, temperature).astype(np.float32)


def logits_model(model: keras.Model) -> keras.Model:
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


def features_model(model: keras.Model) -> keras.Model:
    """A Keras model from the same input to the penultimate features (the head's input), which
    the out-of-distribution guard (`core.ood`, Mahalanobis) scores."""
    import keras

    inp = keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in model.layers[1:-1]:
        x = layer(x)
    return keras.Model(inp, x, name="features")


def features_and_logits(model: keras.Model) -> keras.Model:
    """One Keras model, image -> [penultimate features, logits]: the OOD guard's inputs."""
    import keras

    fm = features_model(model)
    head = model.layers[-1]
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


@dataclass
class Predictor:
    """Calibrated probabilities for batches of images. Not a diagnosis."""

    path: Path
    classes: list[str]
    height: int
    width: int
    temperature: float = 1.0
    _logits_fn: Any = field(default=None, repr=False)
    tta: str = "none"  # core.tta mode, from calibration.json (the temperature was fitted with it)
    # model.colour_constancy the model was trained with: "none" or the Shades-of-Grey p
    colour_constancy: float | str = "none"

    def __post_init__(self) -> None:
        self._views = tta_mod.views(self.tta, self.height, self.width)
        try:
            preprocess.colour_p(self.colour_constancy)
        except ValueError as exc:
            raise DermaiError(f"{self.path.name}: {exc}") from exc

    def prepare(self, img: Image.Image) -> np.ndarray:
        """The model's input for one image: `core.preprocess.prepare`, as the TFRecords."""
        rgb = img.convert("RGB")
        fitted = preprocess.prepare(rgb, self.height, self.width, self.colour_constancy)
        return np.asarray(fitted, dtype=np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of the images as given (no TTA): what the OOD guard scores."""
        return self._logits_fn(np.asarray(x, dtype=np.float32))

    def outputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits of the images as given, the logits the probabilities come from): the same
        array without TTA, else the TTA logits (`tta_outputs`) as the second."""
        x = np.asarray(x, dtype=np.float32)
        if self.tta == "none":
            z = np.asarray(self._logits_fn(x))
            return z, z
        plain, avg = tta_outputs(lambda v: self._logits_fn(np.ascontiguousarray(v)), x, self._views)
        return np.asarray(plain), np.asarray(avg)

    def predict_arrays(self, x: np.ndarray) -> np.ndarray:
        """x: N x H x W x 3 raw RGB in [0, 255] -> N x classes calibrated probabilities."""
        return softmax(self.outputs(x)[1], self.temperature)

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.predict_arrays(np.stack([self.prepare(im) for im in images]))


def _keras_fn(
    path: Path, train_params: str | Path | None = None
) -> tuple[LogitsFn, list[str], int, int, float | str]:
    model, meta = loader.load_keras(path, train_params)
    h, w, _ = meta["input_shape"]
    lm = logits_model(model)
    fn = lambda x: lm.predict(x, batch_size=64, verbose=0)  # noqa: E731
    return fn, meta["classes"], h, w, loader.colour_constancy(meta)


def _tflite_fn(
    path: Path, num_threads: int | None = None
) -> tuple[LogitsFn, list[str], int, int, float | str]:
    from dermai.runtime.tflite import TfliteModel

    model = TfliteModel(path, num_threads)
    return model, model.classes, model.height, model.width, model.colour_constancy


def tflite_temperature(path: Path) -> float | None:
    """The temperature embedded in an exported .tflite (None if it carries none)."""
    from dermai.runtime.tflite import read_metadata

    t = read_metadata(path).get("temperature")
    return None if t is None else float(t)


def load(
    path: str | Path,
    *,
    num_threads: int | None = None,
    train_params: str | Path | None = None,
    calibration: str | Path | None = None,
) -> Predictor:
    """A Predictor for a `.keras` or `.tflite` model file.

    A .tflite's own embedded temperature wins over a calibration file (the .tflite is meant to
    travel alone) and a .tflite never applies the calibration's TTA (as on device);
    `num_threads` applies to .tflite models only. `train_params` and
    `calibration` default to the files beside the model (see `runtime.loader`).
    """
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"model not found: {path}")
    temperature, tta = None, "none"
    if path.suffix == ".keras":
        fn, classes, h, w, colour = _keras_fn(path, train_params)
        tta = read_tta(path, calibration)
    elif path.suffix == ".tflite":
        fn, classes, h, w, colour = _tflite_fn(path, num_threads)
        temperature = tflite_temperature(path)
    else:
        raise DermaiError(f"unsupported model file {path.name}: use .keras or .tflite")
    if temperature is None:
        temperature = loader.read_temperature(path, calibration)
    return Predictor(path, classes, h, w, temperature, fn, tta, colour)


def embedded_guard(model_path: str | Path) -> dict[str, Any] | None:
    """The OOD guard document a .tflite carries in its `dermai` metadata (None if none)."""
    if Path(model_path).suffix != ".tflite":
        return None
    from dermai.runtime.tflite import read_metadata

    doc = read_metadata(model_path).get("ood")
    return doc if isinstance(doc, dict) else None


def load_guard(
    model_path: str | Path, keras_model: keras.Model | None = None
) -> tuple[Guard | None, LogitsFn | None]:
    """(guard, features_fn) for a model; (None, None) without a guard.

    An exported .tflite's embedded guard wins (the file travels alone, and the browser reads the
    same document); otherwise the `ood.json` beside the model. A guard on penultimate features
    needs a Keras model: `keras_model`, else the `model.keras` beside the model file (the
    pipeline writes both into models/).
    """
    from dermai.core.ood import Guard

    doc, f = embedded_guard(model_path), Path(model_path).with_name(OOD_FILE)
    where = f"the metadata of {Path(model_path).name}" if doc is not None else str(f)
    if doc is None:
        if not f.is_file():
            return None, None
        try:
            doc = json.loads(f.read_text("utf-8"))
        except ValueError as exc:
            raise DermaiError(f"{f}: not valid JSON ({exc})") from exc
    try:
        guard = Guard.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{where}: not a valid OOD guard ({exc})") from exc
    if guard.space != "features":
        return guard, None
    if keras_model is None:
        beside = Path(model_path).with_name("model.keras")
        if not beside.is_file():
            raise DermaiError(
                f"the OOD guard in {where} scores the model's features: it needs "
                "models/model.keras beside the model (or --keras)"
            )

        keras_model = archive.load_keras(beside)
    fm = features_model(keras_model)
    return guard, lambda x: np.asarray(fm(np.asarray(x, dtype=np.float32), training=False))


def training_image_kind(model_path: str | Path) -> str:
    """What the model was trained on, e.g. "dermoscopic images of skin lesions": from an
    exported .tflite's embedded guard, else the `model_card.json` (or `train_params.json`)
    beside the model."""
    from dermai.core.modelcard import dataset_of

    doc = embedded_guard(model_path)
    if doc is not None and doc.get("image_kind"):
        return str(doc["image_kind"])
    for name, get in (
        ("model_card.json", lambda d: d["data"]["image_kind"]),
        (loader.TRAIN_PARAMS_FILE, lambda d: dataset_of(d["params"])["image_kind"]),
    ):
        f = Path(model_path).with_name(name)
        try:
            return str(get(json.loads(f.read_text("utf-8"))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return "images like its training data"


def ood_message(kind: str) -> str:
    """What every runtime says when the guard trips (the page and `dermai predict`)."""
    return (
        f"This does not look like the images this model was trained on ({kind}), so it "
        "gives no answer."
    )
