"""The one loader of a trained model and the files that travel with it.

`dermai train` writes `train_params.json` (classes, input shape, resolved params) and `dermai
evaluate` writes `calibration.json` (the fitted temperature). Every reader of a model finds them
here: by the explicit `--train-params` / `--calibration` path when given, else beside the model.
An exported .tflite carries both in its own metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermai.errors import DermaiError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

TRAIN_PARAMS_FILE = "train_params.json"
CALIBRATION_FILE = "calibration.json"


def train_params_path(model: str | Path, train_params: str | Path | None = None) -> Path:
    """The explicit path, else `train_params.json` beside the model."""
    return Path(train_params) if train_params else Path(model).with_name(TRAIN_PARAMS_FILE)


def calibration_path(model: str | Path, calibration: str | Path | None = None) -> Path:
    """The explicit path, else `calibration.json` beside the model."""
    return Path(calibration) if calibration else Path(model).with_name(CALIBRATION_FILE)


def read_train_params(model: str | Path, train_params: str | Path | None = None) -> dict[str, Any]:
    """The model's train_params.json (it names the classes and the input shape)."""
    f = train_params_path(model, train_params)
    if not f.is_file():
        raise DermaiError(
            f"{f} not found (it names the model's classes; written by `dermai train`)"
        )
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise DermaiError(f"{f} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or "classes" not in meta or "input_shape" not in meta:
        raise DermaiError(f"{f} lacks classes or input_shape")
    return meta


def colour_constancy(meta: dict[str, Any]) -> float | str:
    """The `model.colour_constancy` a model was trained with, from its train_params.json
    (written beside `input_shape`; "none" for models trained before the option existed)."""
    return meta.get("colour_constancy", "none")


def read_temperature(
    model: str | Path, calibration: str | Path | None = None, *, required: bool = False
) -> float:
    """The fitted temperature, or 1.0 (uncalibrated) when there is no calibration file and
    none was `required`."""
    f = calibration_path(model, calibration)
    if not f.is_file():
        if required:
            raise DermaiError(f"calibration not found: {f} (run `dermai evaluate` first)")
        if calibration:
            log.warning("calibration file %s not found: temperature 1.0", f)
        return 1.0
    try:
        t = float(json.loads(f.read_text())["temperature"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DermaiError(f"{f}: no readable temperature ({exc})") from exc
    if not (math.isfinite(t) and t > 0):
        raise DermaiError(f"{f}: temperature must be a positive number, got {t}")
    return t


def load_keras(
    model: str | Path, train_params: str | Path | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """(Keras model, its train_params) with one-line errors for missing files."""
    path = Path(model)
    if not path.is_file():
        raise DermaiError(f"model not found: {path}")
    meta = read_train_params(path, train_params)

    from dermai.models import archive

    return archive.load_keras(path), meta


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """`--model`, `--train-params` and `--calibration`, as every command that loads a trained
    model takes them (the defaults are resolved by this module, beside the model)."""
    p.add_argument(
        "--model",
        default=None,
        help=".keras (calibration.json beside) or .tflite (default: the train "
        "stage's --model in dvc.yaml, models/model.keras)",
    )
    p.add_argument(
        "--train-params",
        default=None,
        help="train_params.json of a .keras model (default: beside the model)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration.json of a .keras model (default: beside the model; none: uncalibrated)",
    )
