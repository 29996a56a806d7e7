"""Keras classifier -> LiteRT bytes: float32, or full-integer int8 with int8 input and output,
both outputting logits with the dermai metadata (classes, input, temperature) embedded."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from dermai.errors import DermaiError
from dermai.runtime.inference import logits_model
from dermai.runtime.tflite import embed_metadata, make_metadata

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

KINDS = ("float32", "int8")


def convert(
    logits_model: keras.Model, kind: str, representative: np.ndarray | None = None
) -> bytes:
    """Keras logits model -> .tflite bytes (float32, or full-integer int8 with int8 I/O)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(logits_model)
    if kind == "int8":
        if representative is None or not len(representative):
            raise DermaiError("int8 export needs representative images")

        def samples():
            for i in range(len(representative)):
                yield [representative[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif kind != "float32":
        raise DermaiError(f"unknown export kind {kind!r}")
    chatter = io.StringIO()  # Keras prints its SavedModel signature to stdout
    with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
        # int8 I/O: the input's range comes from the representative set, as intended
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        out = converter.convert()
    log.debug("converter output: %s", chatter.getvalue())
    return bytes(out)


def export_bytes(
    keras_model: keras.Model,
    classes: list[str],
    temperature: float,
    representative: np.ndarray | None,
    kinds: tuple[str, ...] = KINDS,
    *,
    ood: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
    colour_constancy: float | str = "none",
) -> dict[str, bytes]:
    """The .tflite files (logits out), metadata embedded (with the OOD guard when given, and
    the colour constancy the model was trained with)."""
    h, w = (int(d) for d in keras_model.inputs[0].shape[1:3])
    lm = logits_model(keras_model)
    out = {}
    for kind in kinds:
        raw = convert(lm, kind, representative if kind == "int8" else None)
        meta = make_metadata(
            classes,
            h,
            w,
            temperature=temperature,
            quantization=kind,
            ood=ood,
            training_data=training_data,
            colour_constancy=colour_constancy,
        )
        out[kind] = embed_metadata(raw, meta)
    return out
