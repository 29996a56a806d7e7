"""LiteRT export and runner: embedded metadata, float parity with Keras, int8 I/O handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deploy import CLASSES, TEMPERATURE, H, W, lesion, representative, tiny_tflite
from dermai.errors import DermaiError


@pytest.fixture(scope="module")
def tiny(tiny_lite0, tiny_float32, tiny_int8) -> dict[str, Path]:
    """The session's shared tiny Lite0 and its LiteRT exports (tests/conftest.py): temperature
    1.7, int8 calibrated on deploy.representative()."""
    assert TEMPERATURE == 1.7
    return {"keras": tiny_lite0, "float32": tiny_float32, "int8": tiny_int8}


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.stack(
        [
            np.asarray(lesion(CLASSES[i % 3], seed=seed + i, height=H, width=W), dtype=np.float32)
            for i in range(n)
        ]
    )


def keras_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import keras

    from dermai.runtime.inference import logits_model

    return logits_model(keras.saving.load_model(path, compile=False)).predict(x, verbose=0)


def test_metadata_is_embedded_and_replaced_not_duplicated(tiny):
    from ai_edge_litert.tools import flatbuffer_utils

    from dermai.runtime.tflite import METADATA_NAME, embed_metadata, read_metadata

    meta = read_metadata(tiny["float32"])
    assert meta["classes"] == CLASSES
    assert meta["input"]["height"] == H and meta["input"]["width"] == W
    assert meta["output"] == "logits" and meta["temperature"] == pytest.approx(1.7)
    assert meta["quantization"] == "float32" and "NOT a medical" in meta["disclaimer"]
    assert read_metadata(tiny["int8"])["quantization"] == "int8"

    blob = embed_metadata(tiny["float32"].read_bytes(), meta | {"temperature": 2.5})
    assert read_metadata(blob)["temperature"] == 2.5
    names = [m.name for m in flatbuffer_utils.read_model_from_bytearray(blob).metadata]
    assert names.count(METADATA_NAME.encode()) == 1
    assert b"CONVERSION_METADATA" in names  # the converter's own entry survives


def test_a_model_without_metadata_or_a_non_model_is_refused(tiny, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils

    from dermai.runtime.tflite import TfliteModel, read_metadata

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(tiny["float32"].read_bytes()))
    obj.metadata = [m for m in obj.metadata if m.name != b"dermai"]
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(obj)))
    assert read_metadata(bare) == {}
    with pytest.raises(DermaiError, match="dermai export"):
        TfliteModel(bare)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x89PNG not a model at all")
    with pytest.raises(DermaiError, match="not a LiteRT"):
        read_metadata(junk)


def test_float_logits_match_keras(tiny):
    from dermai.runtime.tflite import load_tflite

    fn, classes, h, w = load_tflite(tiny["float32"], num_threads=2)
    assert (classes, h, w) == (CLASSES, H, W)
    x = images(16)
    ref, got = keras_logits(tiny["keras"], x), fn(x)
    assert got.dtype == np.float32 and got.shape == (16, 3)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(scale, 1.0), rtol=1e-4)
    assert np.array_equal(got.argmax(1), ref.argmax(1))


def test_int8_model_takes_and_gives_quantized_tensors_handled_by_the_runner(tiny):
    from dermai.runtime.tflite import TfliteModel

    model = TfliteModel(tiny["int8"], num_threads=1)
    assert model.input_dtype == np.int8
    assert model._out["dtype"] == np.int8
    scale, zero_point = model._in["quantization"]
    assert scale > 0 and -128 <= zero_point <= 127  # raw [0, 255] pixels -> int8
    x = images(12, seed=5)
    logits = model(x)
    assert logits.dtype == np.float32 and logits.shape == (12, 3)
    assert np.all(np.isfinite(logits))
    out_scale, _ = model._out["quantization"]
    steps = logits / out_scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # dequantized int8 values
    ref = keras_logits(tiny["keras"], x)
    assert np.corrcoef(ref.ravel(), logits.ravel())[0, 1] > 0.5


def test_batches_larger_than_a_chunk_equal_one_by_one(tiny):
    from dermai.runtime.tflite import MAX_BATCH, TfliteModel

    model = TfliteModel(tiny["int8"])
    x = images(MAX_BATCH + 3, seed=11)
    whole = model(x)
    single = np.concatenate([model(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(whole, single)
    assert model(x[:0]).shape == (0, 3)
    with pytest.raises(DermaiError, match="expected N x 24 x 32 x 3"):
        model(np.zeros((1, 10, 10, 3), np.float32))


def test_quantize_rounds_clips_and_dequantize_inverts():
    from dermai.runtime.tflite import dequantize, quantize

    x = np.array([0.0, 1.0, 127.4, 127.6, 255.0, 400.0, -3.0])
    q = quantize(x, 1.0, -128, np.int8)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, -127, -1, 0, 127, 127, -128]
    np.testing.assert_allclose(dequantize(q, 1.0, -128)[:5], [0, 1, 127, 128, 255])
    u = quantize(np.array([0.5, 2.0]), 0.5, 3, np.uint8)
    assert u.tolist() == [4, 7]
    with pytest.raises(DermaiError):
        quantize(x, 0.0, 0, np.int8)


def test_inference_load_uses_the_embedded_temperature(tiny, tmp_path):
    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference

    copy = tmp_path / "alone.tflite"
    copy.write_bytes(tiny["float32"].read_bytes())
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 9.0}))
    p = bundle_mod.load(copy, num_threads=1)
    assert p.temperature == pytest.approx(1.7) and p.classes == CLASSES
    images = [lesion("nv", seed=3), lesion("bcc", seed=4, width=60)]
    probs = p.analyse(np.stack([p.prepare(im) for im in images])).probabilities
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    logits = p.logits_fn(np.stack([p.prepare(lesion("nv", seed=3))]))
    np.testing.assert_allclose(probs[0], inference.softmax(logits, 1.7)[0], rtol=1e-5)


def test_conversion_is_byte_deterministic(tiny, tmp_path):
    again = tiny_tflite(
        tiny["keras"],
        tmp_path,
        ("float32", "int8"),
        temperature=1.7,
        representative=representative(),
    )
    for kind in ("float32", "int8"):
        assert again[kind].read_bytes() == tiny[kind].read_bytes(), kind
