"""Keras classifier -> LiteRT bytes: float32, or full-integer int8 with int8 input and output,
both outputting logits (and the pooled frozen trunk, for a trunk OOD guard) with the dermai
metadata (classes, input, temperature, guard) embedded.

Selective quantization: the int8 model can keep its first `float_stages` backbone stages (input
scaling, stem, block1..blockN) in float. On a HAM10000 Lite0 model those early, high-resolution
stages are where int8 loses top-1 agreement (measured in docs/model.md); their weights are small,
so the file stays about 0.3x the float one. It follows TensorFlow's own QuantizationDebugger:
calibrate only, then quantize with the chosen ops denylisted (`mlir_quantize`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from dermai.errors import DermaiError
from dermai.io.native_stderr import quiet_native
from dermai.runtime.inference import logits_and_trunk, logits_model
from dermai.runtime.tflite import embed_metadata, make_metadata

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

KINDS = ("float32", "int8")

# Keras layer names of the input preprocessing and the stem (Lite0, Keras' B0, the tiny test model)
_INPUT_LAYERS = ("rescaling", "normalization", "stem_")


def float_stage_pattern(float_stages: int) -> re.Pattern[str] | None:
    """Which converted ops stay float: those named after a Keras layer of the input scaling, the
    stem or EfficientNet stages block1..block`float_stages` (None: none, every op int8).

    LiteRT names an op's output tensor by the layers fused into it, e.g.
    `logits_1/lower_1/block2b_add_1/Add` or `...;block1a_dwconv_1/depthwise;...`."""
    if float_stages <= 0:
        return None
    stages = "|".join(str(i) for i in range(1, float_stages + 1))
    inputs = "|".join(_INPUT_LAYERS)
    return re.compile(rf"(?:^|[/;])(?:{inputs}|block(?:{stages})[a-z]_)")


def op_output_names(model: bytes) -> list[str]:
    """The output tensor name of every operator in a .tflite model, in graph order."""
    from ai_edge_litert import schema_py_generated as fb

    m = fb.Model.GetRootAs(model, 0)
    names = []
    for g in range(m.SubgraphsLength()):
        sub = m.Subgraphs(g)
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            for j in range(op.OutputsLength()):
                names.append((sub.Tensors(op.Outputs(j)).Name() or b"").decode("utf-8"))
    return names


def _run_converter(converter: tf.lite.TFLiteConverter) -> bytes:
    chatter = io.StringIO()  # Keras prints its SavedModel signature to stdout
    # and the MLIR converter's C++ log lines ("fully_quantize: ...") go to fd 2
    with contextlib.redirect_stdout(chatter), warnings.catch_warnings(), quiet_native():
        # int8 I/O: the input's range comes from the representative set, as intended
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        out = converter.convert()
    log.debug("converter output: %s", chatter.getvalue())
    return bytes(out)


def _quantize_selectively(converter: tf.lite.TFLiteConverter, float_stages: int) -> bytes:
    """Calibrate, then quantize to int8 with the ops of the first `float_stages` stages left
    float: the route of `tf.lite.experimental.QuantizationDebugger` (calibrate-only conversion,
    then `mlir_quantize` with `denylisted_nodes`), without its debug model."""
    from tensorflow.lite.python import convert as tfl_convert

    if not hasattr(converter, "_experimental_calibrate_only") or not hasattr(
        tfl_convert, "mlir_quantize"
    ):  # pragma: no cover - a TensorFlow without the debugger's route
        raise DermaiError(
            f"TensorFlow {tf.__version__} cannot keep ops float in an int8 model; "
            "use export.float_stages: 0"
        )
    converter.experimental_new_quantizer = True
    converter._experimental_calibrate_only = True  # the QuantizationDebugger's own switch
    calibrated = _run_converter(converter)
    pattern = float_stage_pattern(float_stages)
    assert pattern is not None
    nodes = sorted({n for n in op_output_names(calibrated) if pattern.search(n)})
    if not nodes:
        raise DermaiError(
            f"export.float_stages={float_stages}: no op of the model is named after the input "
            "scaling, the stem or block1.. (not an EfficientNet-style backbone?); use 0"
        )
    log.info("int8: %d ops of the first %d stage(s) kept float", len(nodes), float_stages)
    with quiet_native():
        out = tfl_convert.mlir_quantize(
            calibrated,
            input_data_type=tf.int8,
            output_data_type=tf.int8,
            denylisted_nodes=nodes,
        )
    return bytes(out)


def convert(
    logits_model: keras.Model,
    kind: str,
    representative: np.ndarray | None = None,
    float_stages: int = 0,
    representative_metadata: np.ndarray | None = None,
) -> bytes:
    """Keras logits model -> .tflite bytes (float32, or full-integer int8 with int8 I/O whose
    first `float_stages` backbone stages stay float). A model with a metadata input is
    calibrated on `representative_metadata` (one encoded row per representative image)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(logits_model)
    if kind == "int8":
        if representative is None or not len(representative):
            raise DermaiError("int8 export needs representative images")
        if len(logits_model.inputs) > 1 and (
            representative_metadata is None or len(representative_metadata) != len(representative)
        ):
            raise DermaiError("int8 export of a metadata model needs one metadata row per image")

        def samples():
            for i in range(len(representative)):
                if representative_metadata is None:
                    yield [representative[i : i + 1]]
                else:  # the Keras inputs' order: image, metadata
                    yield [representative[i : i + 1], representative_metadata[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        if float_stages > 0:
            return _quantize_selectively(converter, float_stages)
    elif kind != "float32":
        raise DermaiError(f"unknown export kind {kind!r}")
    return _run_converter(converter)


def output_roles(model: bytes, n_classes: int) -> list[str]:
    """The role of each output of a converted [logits, trunk] model, in its output order (which
    the converter does not keep): its tensors are named after the Keras output index
    (`...:0` logits, `...:1` trunk); the logits' width is checked against the classes."""
    from ai_edge_litert import schema_py_generated as fb

    sub = fb.Model.GetRootAs(model, 0).Subgraphs(0)
    roles, widths = [], []
    for i in range(sub.OutputsLength()):
        t = sub.Tensors(sub.Outputs(i))
        name = (t.Name() or b"").decode("utf-8")
        k = name.rsplit(":", 1)[-1]
        roles.append({"0": "logits", "1": "trunk"}.get(k, "?"))
        widths.append(int(t.Shape(t.ShapeLength() - 1)))
    if sorted(roles) != ["logits", "trunk"] or widths[roles.index("logits")] != n_classes:
        raise DermaiError(f"cannot tell the converted model's outputs apart ({roles}, {widths})")
    return roles


def logits_first(model: bytes, n_classes: int) -> bytes:
    """A converted [logits, trunk] model with its outputs in that order (the converter may
    list them the other way round): every runtime, LiteRT.js included, then reads output 0 as
    the logits and output 1 as the trunk, whether it follows the subgraph or the signature."""
    from ai_edge_litert.tools import flatbuffer_utils

    roles = output_roles(model, n_classes)
    if roles == ["logits", "trunk"]:
        return model
    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    sg = obj.subgraphs[0]
    sg.outputs = [sg.outputs[roles.index("logits")], sg.outputs[roles.index("trunk")]]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


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
    float_stages: int = 0,
    metadata: dict[str, Any] | None = None,
    representative_metadata: np.ndarray | None = None,
) -> dict[str, bytes]:
    """The .tflite files (logits out, and the pooled frozen trunk when the OOD guard scores
    it), metadata embedded (with the OOD guard when given, and the colour constancy the model
    was trained with); `float_stages` leading backbone stages stay float in the int8 one. A
    model with a metadata input (`metadata`: its encoding) keeps it as its second input."""
    h, w = (int(d) for d in keras_model.inputs[0].shape[1:3])
    trunk = ood is not None and ood.get("space") == "trunk"
    lm = logits_and_trunk(keras_model) if trunk else logits_model(keras_model)
    out = {}
    for kind in kinds:
        log.info(
            "converting to %s TFLite%s",
            kind,
            f" (calibrated on {len(representative)} images)"
            if kind == "int8" and representative is not None
            else "",
        )
        raw = (
            convert(lm, kind, representative, float_stages, representative_metadata)
            if kind == "int8"
            else convert(lm, kind)
        )
        if trunk:
            raw = logits_first(raw, len(classes))
        meta = make_metadata(
            classes,
            h,
            w,
            temperature=temperature,
            quantization=kind,
            ood=ood,
            training_data=training_data,
            colour_constancy=colour_constancy,
            outputs=output_roles(raw, len(classes)) if trunk else None,  # logits, trunk
            metadata=metadata,
        )
        out[kind] = embed_metadata(raw, meta)
    return out
