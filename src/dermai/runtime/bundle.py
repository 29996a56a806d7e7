"""A trained model and the files that travel with it, loaded as one object: the bundle.

`dermai train` writes the model and `train_params.json` (classes, input shape, colour constancy,
the resolved params); `dermai evaluate` writes `calibration.json` (the temperature and the TTA
mode it was fitted with), `ood.json` (the out-of-distribution guard) and `model_card.json`. An
exported .tflite carries classes, input, temperature and guard in its own metadata. This module
is the one that names those files and finds them: by the explicit path when given, else beside
the model.

`load` turns a .keras or .tflite file into a `Bundle`: classes, the input fit (`prepare`, exactly
as the TFRecords were made), temperature, TTA and guard. `Bundle.analyse` is the one path from
fitted images to logits, calibrated probabilities and the guard's verdict: predict, serve,
evaluate, evaluate-external and export's parity all go through it. Not a diagnosis.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermai.core import metadata as metadata_mod
from dermai.core import preprocess
from dermai.core import tta as tta_mod
from dermai.core.modelcard import dataset_of
from dermai.core.ood import Guard
from dermai.errors import DermaiError
from dermai.models import archive
from dermai.runtime import inference
from dermai.runtime.tflite import TfliteModel, read_metadata

log = logging.getLogger(__name__)

# The files beside a model (`dermai train` writes the first, `dermai evaluate` the others).
TRAIN_PARAMS_FILE = "train_params.json"
CALIBRATION_FILE = "calibration.json"
OOD_FILE = "ood.json"
MODEL_CARD_FILE = "model_card.json"
KERAS_FILE = "model.keras"  # the Keras graph a .tflite's feature-space guard needs beside it

BATCH = 64  # images per forward pass; does not change the outputs
TOP_K = 3
UNKNOWN_KIND = "images like its training data"

LogitsFn = Callable[[np.ndarray], np.ndarray]
"""Raw RGB batch N x H x W x 3 -> N x classes logits (or N x d features)."""


# --------------------------------------------------------------------------- the files


def side_path(model: str | Path, name: str, explicit: str | Path | None = None) -> Path:
    """The explicit path, else the file `name` beside the model."""
    return Path(explicit) if explicit else Path(model).with_name(name)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DermaiError(f"{path} is not valid JSON: {exc}".splitlines()[0]) from exc


def read_train_params(model: str | Path, explicit: str | Path | None = None) -> dict[str, Any]:
    """The model's train_params.json (it names the classes and the input shape)."""
    f = side_path(model, TRAIN_PARAMS_FILE, explicit)
    if not f.is_file():
        raise DermaiError(
            f"{f} not found (it names the model's classes; written by `dermai train`)"
        )
    meta = _read_json(f, "train params")
    if not isinstance(meta, dict) or "classes" not in meta or "input_shape" not in meta:
        raise DermaiError(f"{f} lacks classes or input_shape")
    return meta


def colour_constancy(meta: dict[str, Any]) -> float | str:
    """The `model.colour_constancy` a model was trained with, from its train_params.json
    (written beside `input_shape`; "none" for models trained before the option existed)."""
    return meta.get("colour_constancy", "none")


def read_temperature(
    model: str | Path, explicit: str | Path | None = None, *, required: bool = False
) -> float:
    """The fitted temperature, or 1.0 (uncalibrated) when there is no calibration file and
    none was `required`."""
    f = side_path(model, CALIBRATION_FILE, explicit)
    if not f.is_file():
        if required:
            raise DermaiError(f"calibration not found: {f} (run `dermai evaluate` first)")
        if explicit:
            log.warning("calibration file %s not found: temperature 1.0", f)
        return 1.0
    try:
        t = float(json.loads(f.read_text())["temperature"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{f}: no readable temperature ({exc})") from exc
    if not (math.isfinite(t) and t > 0):
        raise DermaiError(f"{f}: temperature must be a positive number, got {t}")
    return t


def read_tta(model: str | Path, explicit: str | Path | None = None) -> str:
    """The test-time augmentation mode (`core.tta`) the temperature was fitted with: the
    calibration file's `tta`, "none" when it names none or there is no file."""
    f = side_path(model, CALIBRATION_FILE, explicit)
    if not f.is_file():
        return "none"
    try:
        mode = json.loads(f.read_text()).get("tta", "none")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise DermaiError(f"{f}: not a calibration document ({exc})") from exc
    if mode not in tta_mod.MODES:
        raise DermaiError(f"{f}: unknown tta {mode!r} (one of {', '.join(tta_mod.MODES)})")
    return str(mode)


def embedded_guard(model: str | Path) -> dict[str, Any] | None:
    """The OOD guard document a .tflite carries in its `dermai` metadata (None if none)."""
    if Path(model).suffix != ".tflite":
        return None
    doc = read_metadata(model).get("ood")
    return doc if isinstance(doc, dict) else None


def read_guard(
    model: str | Path, explicit: str | Path | None = None
) -> tuple[dict[str, Any], str] | None:
    """(guard document, where it was found), validated; None without a guard. An exported
    .tflite's embedded guard wins (the file travels alone, and the browser reads the same
    document); otherwise `ood.json` (explicit, else beside the model)."""
    doc, f = embedded_guard(model), side_path(model, OOD_FILE, explicit)
    where = f"the metadata of {Path(model).name}" if doc is not None else str(f)
    if doc is None:
        if not f.is_file():
            if explicit:
                raise DermaiError(f"OOD guard not found: {f} (written by `dermai evaluate`)")
            return None
        doc = _read_json(f, "OOD guard")
    try:
        Guard.from_dict(doc)  # validates method, space and the fitted state
    except (KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{where}: not a valid OOD guard ({exc})") from exc
    return doc, where


def export_guard(
    model: str | Path, explicit: str | Path | None, meta: dict[str, Any]
) -> dict[str, Any] | None:
    """The guard document exported models carry: `ood.json` as `evaluate` wrote it (method, its
    fitted state, threshold, temperature), plus the kind of training images and the exact
    refusal text, so a runtime needs nothing but the model file to apply the same rule."""
    found = read_guard(model, explicit)
    if found is None:
        f = side_path(model, OOD_FILE, explicit)
        log.warning("no %s: the exported models carry no out-of-distribution guard", f)
        return None
    kind = dataset_of(meta.get("params", {}))["image_kind"]
    return {**found[0], "image_kind": kind, "message": ood_message(kind)}


def training_image_kind(model: str | Path) -> str:
    """What the model was trained on, e.g. "dermoscopic images of skin lesions": from an
    exported .tflite's embedded guard, else the `model_card.json` (or `train_params.json`)
    beside the model."""
    doc = embedded_guard(model)
    if doc is not None and doc.get("image_kind"):
        return str(doc["image_kind"])
    for name, get in (
        (MODEL_CARD_FILE, lambda d: d["data"]["image_kind"]),
        (TRAIN_PARAMS_FILE, lambda d: dataset_of(d["params"])["image_kind"]),
    ):
        try:
            return str(get(json.loads(side_path(model, name).read_text("utf-8"))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return UNKNOWN_KIND


def ood_message(kind: str) -> str:
    """What every runtime says when the guard trips (the page and `dermai predict`)."""
    return (
        f"This does not look like the images this model was trained on ({kind}), so it "
        "gives no answer."
    )


def read_side_json(model: str | Path, name: str) -> dict[str, Any] | None:
    """A JSON file beside the model (e.g. the model card), or None when missing or unreadable
    (logged): for what a page shows about a model, never for what it computes."""
    f = side_path(model, name)
    try:
        return json.loads(f.read_text("utf-8")) if f.is_file() else None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", f, exc)
        return None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """`--model`, `--train-params` and `--calibration`, as every command that loads a trained
    model takes them (the defaults are resolved here, beside the model)."""
    p.add_argument(
        "--model",
        default=None,
        help=".keras (calibration.json beside) or .tflite (default: the train "
        "stage's --model in dvc.yaml, models/model.keras)",
    )
    p.add_argument(
        "--train-params",
        default=None,
        help=f"{TRAIN_PARAMS_FILE} of a .keras model (default: beside the model)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help=f"{CALIBRATION_FILE} of a .keras model (default: beside the model; none: "
        "uncalibrated)",
    )


# --------------------------------------------------------------------------- the object


def top(proba: np.ndarray, classes: list[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """Highest-probability classes first; ties keep class order (stable sort)."""
    order = np.argsort(-proba, kind="stable")[:k]
    return [(classes[i], float(proba[i])) for i in order]


@dataclass(frozen=True)
class Analysis:
    """What a bundle says about a batch of fitted images (row i: image i)."""

    logits: np.ndarray  # of the images as given: what the guard scores and parity compares
    scored: np.ndarray  # the logits the probabilities come from (the TTA's, when on)
    probabilities: np.ndarray  # softmax(scored / temperature), float32
    in_distribution: np.ndarray  # bool; all True without a guard
    ood_scores: np.ndarray | None  # the guard's scores (higher = more like the training data)


def keras_logits(model: Any) -> LogitsFn:
    """A Keras classifier's logits, BATCH images per forward pass (as `evaluate` always ran);
    for a model with metadata, a function of (images, encoded metadata rows)."""
    return keras_batched(inference.logits_model(model))


def keras_batched(model: Any) -> LogitsFn:
    """A Keras model as a function of a raw batch (and, for a two-input model, the encoded
    metadata rows), BATCH images per forward pass: its memory is one batch's activations,
    whatever N is (the whole HAM10000 test split through the trunk in one call needed about
    24 GB)."""
    import tensorflow as tf

    if len(model.inputs) > 1:
        fn = tf.function(lambda x, m: model([x, m], training=False), reduce_retracing=True)
    else:
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    n = int(model.output_shape[-1])

    def run(x: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        parts = [np.asarray(x, dtype=np.float32)] + ([] if m is None else [np.asarray(m)])
        out = [np.asarray(fn(*(p[i : i + BATCH] for p in parts))) for i in range(0, len(x), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, n), np.float32)

    return run


@dataclass
class Bundle:
    """A trained model ready to analyse images. Not a diagnosis."""

    path: Path
    classes: list[str]
    height: int
    width: int
    logits_fn: LogitsFn = field(repr=False)
    temperature: float = 1.0
    tta: str = "none"  # core.tta mode, from calibration.json (the temperature was fitted with it)
    colour_constancy: float | str = "none"  # "none" or the Shades-of-Grey p it was trained with
    guard: Guard | None = None
    # x -> what the guard scores beside the logits (pooled frozen trunk or penultimate features)
    features_fn: LogitsFn | None = field(default=None, repr=False)
    keras_model: Any = field(default=None, repr=False)  # the Keras graph, when loaded
    meta: dict[str, Any] = field(default_factory=dict, repr=False)  # train_params.json (.keras)
    # model.metadata's encoding (core.metadata): the model's second input; None = images only
    metadata: metadata_mod.Encoder | None = None

    def __post_init__(self) -> None:
        self._views = tta_mod.views(self.tta, self.height, self.width)
        try:
            preprocess.colour_p(self.colour_constancy)
        except ValueError as exc:
            raise DermaiError(f"{self.path.name}: {exc}") from exc
        if self.guard is not None and self.guard.needs_features and not self.features_fn:
            raise DermaiError(
                f"the OOD guard of {self.path.name} scores image features ({self.guard.space}): "
                "it needs them from the model"
            )

    def prepare(self, img: Image.Image) -> np.ndarray:
        """The model's input for one image: `core.preprocess.prepare`, as the TFRecords."""
        fitted = preprocess.prepare(
            img.convert("RGB"), self.height, self.width, self.colour_constancy
        )
        return np.asarray(fitted, dtype=np.float32)

    def metadata_rows(self, n: int, m: np.ndarray | None = None) -> np.ndarray:
        """The model's metadata input for `n` images: `m` (n x width, encoded by
        `self.metadata`), or every field unknown when None."""
        if self.metadata is None:
            raise DermaiError(f"{self.path.name} takes no metadata")
        if m is None:
            return np.tile(self.metadata.unknown(), (n, 1))
        m = np.asarray(m, dtype=np.float32)
        if m.shape != (n, self.metadata.width):
            raise DermaiError(
                f"metadata rows {m.shape} do not fit {n} images x {self.metadata.width} inputs"
            )
        return m

    def encode_answers(self, answers: Mapping[str, object]) -> tuple[np.ndarray, dict[str, Any]]:
        """(the metadata row of one image, what was used): `answers` ({field: raw value}, any
        subset) encoded by `self.metadata`, with the fields it used as known and the answers
        it could not use (a field it does not take, or a value training never saw)."""
        if self.metadata is None:
            raise DermaiError(f"{self.path.name} takes no metadata")
        enc = self.metadata
        used = {f: str(answers[f]) for f in enc.fields if f in answers and enc.known(f, answers[f])}
        unused = {
            str(f): str(v)
            for f, v in answers.items()
            if f not in used and metadata_mod.normalise(v)
        }
        return enc.encode(used), {"used": used, "not_used": unused}

    def outputs(self, x: np.ndarray, m: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits of the images as given, the logits the probabilities come from): the same
        array without TTA, else the TTA logits (`inference.tta_outputs`) as the second. `m`:
        the encoded metadata rows of a model that takes them (None: every field unknown)."""
        x = np.asarray(x, dtype=np.float32)
        fn: Callable[[np.ndarray], np.ndarray] = self.logits_fn
        if self.metadata is not None:
            rows = self.metadata_rows(len(x), m)
            fn = lambda v: self.logits_fn(v, rows)  # type: ignore[call-arg]  # noqa: E731
        elif m is not None:
            raise DermaiError(f"{self.path.name} takes no metadata")
        if self.tta == "none":
            z = np.asarray(fn(x))
            return z, z
        plain, avg = inference.tta_outputs(lambda v: fn(np.ascontiguousarray(v)), x, self._views)
        return np.asarray(plain), np.asarray(avg)

    def analyse(self, x: np.ndarray, m: np.ndarray | None = None) -> Analysis:
        """x: N x H x W x 3 fitted raw RGB in [0, 255] (`prepare`) -> logits, calibrated
        probabilities and, with a guard, which images look like the training data. `m`: the
        encoded metadata rows (`self.metadata.encode`), for a model that takes them; None =
        every field unknown."""
        x = np.asarray(x, dtype=np.float32)
        plain, scored = self.outputs(x, m)
        proba = inference.softmax(scored, self.temperature)
        if self.guard is None:
            return Analysis(plain, scored, proba, np.ones(len(x), bool), None)
        feats = self.features_fn(x) if self.guard.needs_features and self.features_fn else None
        scores = self.guard.score(plain, feats)
        return Analysis(plain, scored, proba, scores >= self.guard.threshold, scores)

    @property
    def lite(self) -> TfliteModel | None:
        """The LiteRT interpreter of a .tflite bundle (None for Keras)."""
        return self.logits_fn if isinstance(self.logits_fn, TfliteModel) else None

    @property
    def image_kind(self) -> str:
        return training_image_kind(self.path)

    def ood_message(self) -> str:
        return ood_message(self.image_kind)


def load_keras(path: str | Path) -> Any:
    """A trained `.keras` file's graph (one-line error when missing)."""
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"model not found: {path}")
    return archive.load_keras(path)


def guard_of(
    path: str | Path,
    keras_model: Any = None,
    lite: TfliteModel | None = None,
    explicit: str | Path | None = None,
) -> tuple[Guard | None, LogitsFn | None]:
    """(guard, features_fn) for a model. A trunk guard on a .tflite reads the file's own second
    output (`lite`, else the file opened again); otherwise the trunk or penultimate features
    come from a Keras graph: `keras_model`, else the `model.keras` beside the model file.
    `explicit`: the `ood.json` to read instead of the one beside the model."""
    found = read_guard(path, explicit)
    if found is None:
        return None, None
    doc, where = found
    guard = Guard.from_dict(doc)
    if not guard.needs_features:
        return guard, None
    if guard.space == "trunk" and Path(path).suffix == ".tflite":
        lite = lite if lite is not None else TfliteModel(path)
        if not lite.has_trunk:
            raise DermaiError(
                f"the OOD guard in {where} scores the frozen trunk, but {Path(path).name} has "
                f"no {inference.TRUNK} output (export it again)"
            )
        return guard, lite.trunk
    if keras_model is None:
        beside = side_path(path, KERAS_FILE)
        if not beside.is_file():
            raise DermaiError(
                f"the OOD guard in {where} scores the model's features: it needs "
                f"models/{KERAS_FILE} beside the model (or --keras)"
            )
        keras_model = load_keras(beside)
    fm = (
        inference.trunk_model(keras_model)
        if guard.space == "trunk"
        else inference.features_model(keras_model)
    )
    return guard, keras_batched(fm)


def load(
    path: str | Path,
    *,
    train_params: str | Path | None = None,
    calibration: str | Path | None = None,
    num_threads: int | None = None,
    keras_model: Any = None,
    calibrated: bool = True,
    tta: str | None = None,
    guard: bool = True,
    ood: str | Path | None = None,
) -> Bundle:
    """The bundle of a `.keras` or `.tflite` model file.

    A .tflite's own embedded temperature and guard win over files beside it (it is meant to
    travel alone) and it never applies the calibration's TTA (as on device); `num_threads`
    applies to .tflite models only. `keras_model`: the model's Keras graph when the caller
    already has it (a .keras file's own, or a .tflite's companion for its feature guard).
    `calibrated=False` ignores any temperature (1.0) and TTA file (what `evaluate` fits);
    `tta` names the TTA mode instead of the calibration's; `guard=False` loads no guard, `ood`
    names the `ood.json` to read instead of the one beside the model.
    """
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"model not found: {path}")
    meta: dict[str, Any] = {}
    temperature: float | None = None
    encoding: dict[str, Any] | None = None
    if path.suffix == ".keras":
        meta = read_train_params(path, train_params)
        keras_model = keras_model if keras_model is not None else load_keras(path)
        fn = keras_logits(keras_model)
        classes, (h, w, _) = list(meta["classes"]), meta["input_shape"]
        colour = colour_constancy(meta)
        mode = "none" if tta is not None or not calibrated else read_tta(path, calibration)
        encoding = meta.get("metadata")
    elif path.suffix == ".tflite":
        lite = TfliteModel(path, num_threads)
        fn, classes, h, w, colour = (
            lite,
            lite.classes,
            lite.height,
            lite.width,
            lite.colour_constancy,
        )
        temperature = float(lite.meta["temperature"]) if "temperature" in lite.meta else None
        mode = "none"
        encoding = lite.meta.get("metadata")
    else:
        raise DermaiError(f"unsupported model file {path.name}: use .keras or .tflite")
    if not calibrated:
        temperature = 1.0
    elif temperature is None:
        temperature = read_temperature(path, calibration)
    lite_model = fn if isinstance(fn, TfliteModel) else None
    g, features_fn = guard_of(path, keras_model, lite_model, ood) if guard else (None, None)
    return Bundle(
        path,
        classes,
        int(h),
        int(w),
        fn,
        temperature,
        tta_mod.check_mode(tta) if tta is not None else mode,
        colour,
        g,
        features_fn,
        keras_model,
        meta,
        encoder_of(path, encoding, keras_model),
    )


def encoder_of(
    path: Path, encoding: dict[str, Any] | None, keras_model: Any
) -> metadata_mod.Encoder | None:
    """The model's metadata encoder (from train_params.json or the .tflite's metadata), checked
    against the Keras graph's metadata input when there is one."""
    if encoding is None:
        width = 0
        if keras_model is not None and path.suffix == ".keras":
            from dermai.models.classifier import metadata_width

            width = metadata_width(keras_model)
        if width:
            raise DermaiError(f"{path.name} takes metadata but its files hold no encoding")
        return None
    try:
        enc = metadata_mod.Encoder.from_dict(encoding)
    except (KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{path.name}: not a valid metadata encoding ({exc})") from exc
    if keras_model is not None and path.suffix == ".keras":
        from dermai.models.classifier import metadata_width

        if metadata_width(keras_model) != enc.width:
            raise DermaiError(
                f"{path.name}: metadata input of width {metadata_width(keras_model)}, but its "
                f"encoding has {enc.width}"
            )
    return enc
