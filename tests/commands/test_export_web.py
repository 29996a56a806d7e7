"""`dermai export-web`: the int8 -> float-I/O wrapper is exact, the site is complete and
byte-deterministic, and missing npm files are a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tinymodel
from deploy import fake_npm, tiny_tflite
from dermai.errors import DermaiError

CLASSES = ["bcc", "mel", "nv"]
NPM = Path(__file__).resolve().parents[2] / "web-ondevice" / "node_modules"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export-web")
    keras_path = tinymodel.save(tinymodel.build(CLASSES), tmp, CLASSES)
    rep = np.random.default_rng(3).uniform(0, 255, (16, tinymodel.H, tinymodel.W, 3))
    return tiny_tflite(
        keras_path,
        tmp,
        ("float32", "int8"),
        temperature=1.25,
        representative=rep.astype(np.float32),
    )


def test_float_io_wraps_int8_exactly_and_keeps_metadata(models):
    from ai_edge_litert.interpreter import Interpreter

    from dermai.commands.export_web import float_io
    from dermai.runtime.tflite import TfliteModel, read_metadata

    original = models["int8"].read_bytes()
    wrapped = float_io(original)
    assert read_metadata(wrapped) == read_metadata(original)
    it = Interpreter(model_content=wrapped)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    x = np.random.default_rng(0).integers(0, 256, (12, tinymodel.H, tinymodel.W, 3))
    x = x.astype(np.float32)
    want = TfliteModel(models["int8"])(x)
    got = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i : i + 1])
        it.invoke()
        got.append(it.get_tensor(out["index"])[0])
    assert np.abs(want).max() > 0  # not a vacuous comparison
    np.testing.assert_array_equal(np.array(got), want)
    assert float_io(models["float32"].read_bytes()) == models["float32"].read_bytes()


def test_site_is_complete_and_deterministic(models, tmp_path):
    from dermai import DISCLAIMER
    from dermai.commands.export_web import WASM, build

    npm = fake_npm(tmp_path / "node_modules")
    a = build(models["int8"].read_bytes(), npm, "dermoscopic images", "model_int8.tflite")
    b = build(models["int8"].read_bytes(), npm, "dermoscopic images", "model_int8.tflite")
    assert a == b
    for name in [
        "index.html",
        "app.js",
        "ondevice.js",
        "app.css",
        "sw.js",
        "model.tflite",
        "manifest.webmanifest",
        "icon-192.png",
        "icon-512.png",
        f"litert/wasm/{WASM}.js",
        f"litert/wasm/{WASM}.wasm",
        "litert/core/index.js",
        "litert/wasm-utils/index.js",
    ]:
        assert name in a, name
    page = a["index.html"].decode()
    assert "{{" not in page and DISCLAIMER in page and "dermoscopic images" in page
    sw = a["sw.js"].decode()
    cached = json.loads(sw[sw.index("const FILES = ") + 14 : sw.index(";\n\nself")])
    assert set(cached) == {"./", *a} - {"sw.js"}
    manifest = json.loads(a["manifest.webmanifest"])
    assert manifest["display"] == "standalone"
    # a different model gives a different cache name, so installed apps pick it up
    c = build(models["float32"].read_bytes(), npm, "dermoscopic images", "m.tflite")
    assert c["sw.js"].split(b"\n")[3] != a["sw.js"].split(b"\n")[3]


def test_missing_npm_files_and_models_without_metadata_are_clear_errors(models, tmp_path):
    from dermai.cli import main
    from dermai.commands.export_web import build

    with pytest.raises(DermaiError, match="make web-deps"):
        build(models["int8"].read_bytes(), tmp_path / "nothing", "x", "m.tflite")
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(models["float32"].read_bytes()))
    obj.metadata = [m for m in obj.metadata if m.name != b"dermai"]
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(obj)))
    assert fb  # the schema module is what the exporter uses too
    npm = fake_npm(tmp_path / "nm")
    assert (
        main(
            [
                "export-web",
                "--model",
                str(bare),
                "--out",
                str(tmp_path / "s"),
                "--npm-dir",
                str(npm),
            ]
        )
        == 1
    )
    assert not (tmp_path / "s").exists()
    assert (
        main(
            [
                "export-web",
                "--model",
                str(models["int8"]),
                "--out",
                str(tmp_path / "s"),
                "--npm-dir",
                str(npm),
            ]
        )
        == 0
    )
    assert (tmp_path / "s" / "model.tflite").is_file()
