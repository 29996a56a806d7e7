"""`dermai export-web`: a static, installable, offline web app that runs the model on the device.

The folder it writes (HTML, JS, LiteRT.js WASM, the model, a web manifest and a cache-first
service worker) can be served by any static host; the photo never leaves the phone or computer,
and after the first visit the app works in airplane mode. The page reads classes, input size,
resize rule, temperature and the out-of-distribution guard from the `dermai` metadata embedded in
the .tflite (the same document Python reads), so browser and `dermai predict` cannot drift.

LiteRT.js (npm `@litertjs/core`, pinned in web-ondevice/package-lock.json, installed by
`make web-deps`) has no int8 tensor type in JS, so a model with int8 input/output gets a
QUANTIZE op in front and a DEQUANTIZE op behind (same scales, int8 kernels untouched): the browser
passes float raw RGB and reads float logits, exactly what `runtime.tflite.TfliteModel` does in
Python. Equal inputs give byte-identical folders. Not a medical diagnosis.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from dermai import DISCLAIMER, __version__
from dermai.errors import DermaiError
from dermai.io.outdir import output_dir
from dermai.runtime.tflite import read_metadata

log = logging.getLogger(__name__)

SOURCES = Path(__file__).resolve().parents[1] / "web" / "ondevice"
NPM_DIR = Path("web-ondevice") / "node_modules"
# One WASM build is enough: the baseline-SIMD one runs in every current browser (Safari has no
# relaxed SIMD) and meets the latency goal (tests/e2e/test_ondevice.py prints it).
WASM = "litert_wasm_compat_internal"
IMPORT_MAP = '{"imports": {"@litertjs/wasm-utils": "./litert/wasm-utils/index.js"}}'
THEME = "#1f4e79"
DEFAULT_IMAGE_KIND = "dermoscopic images of single skin lesions (HAM10000-style)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="exported .tflite with dermai metadata (e.g. models/model_int8.tflite)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder, e.g. site/: new, empty, or an earlier export-web's (its own files "
        "are replaced, others left alone)",
    )
    p.add_argument(
        "--npm-dir", default=str(NPM_DIR), help="node_modules with @litertjs/core (`make web-deps`)"
    )
    p.add_argument(
        "--image-kind",
        default=None,
        help="what the model was trained on, shown to the user (default: from the "
        "model's embedded metadata, else HAM10000-style dermoscopic images)",
    )


# --------------------------------------------------------------------------- model


def float_io(model: bytes) -> bytes:
    """`model` with float32 input/output: QUANTIZE before int8 inputs, DEQUANTIZE after outputs.

    Float models come back unchanged. Metadata, weights and the int8 kernels stay as they are.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    if len(obj.subgraphs) != 1:
        raise DermaiError("export-web expects a model with one subgraph")
    sg = obj.subgraphs[0]
    quantized = (fb.TensorType.INT8, fb.TensorType.UINT8)
    if not any(sg.tensors[i].type in quantized for i in [*sg.inputs, *sg.outputs]):
        return model

    def opcode(builtin: int) -> int:
        for i, oc in enumerate(obj.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 1
        obj.operatorCodes.append(oc)
        return len(obj.operatorCodes) - 1

    def float_twin(index: int) -> int:
        t, f = sg.tensors[index], fb.TensorT()
        f.shape, f.shapeSignature = t.shape, t.shapeSignature
        f.type, f.buffer, f.name = fb.TensorType.FLOAT32, 0, (t.name or b"") + b"_float"
        sg.tensors.append(f)
        return len(sg.tensors) - 1

    renamed: dict[int, int] = {}
    front, back = [], []
    for k, i in enumerate(sg.inputs):
        if sg.tensors[i].type in quantized:
            f = float_twin(i)
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = opcode(fb.BuiltinOperator.QUANTIZE), [f], [i]
            front.append(op)
            sg.inputs[k] = renamed[i] = f
    for k, o in enumerate(sg.outputs):
        if sg.tensors[o].type in quantized:
            f = float_twin(o)
            op = fb.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = opcode(fb.BuiltinOperator.DEQUANTIZE), [o], [f]
            back.append(op)
            sg.outputs[k] = renamed[o] = f
    sg.operators = front + list(sg.operators) + back
    for sig in obj.signatureDefs or []:
        for tm in [*(sig.inputs or []), *(sig.outputs or [])]:
            tm.tensorIndex = renamed.get(tm.tensorIndex, tm.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


# --------------------------------------------------------------------------- site


def icon_png(size: int) -> bytes:
    """A plain deterministic app icon (no timestamps in the PNG)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), THEME)
    d = ImageDraw.Draw(img)
    r = size * 0.28
    c = size / 2
    d.ellipse([c - r, c - r, c + r, c + r], fill=(190, 130, 95))
    d.ellipse([c - r * 0.45, c - r * 0.4, c + r * 0.35, c + r * 0.4], fill=(95, 55, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def manifest() -> dict[str, Any]:
    return {
        "name": "DermAI on-device demo (not a diagnosis)",
        "short_name": "DermAI",
        "description": "Research prototype that runs a skin-lesion image classifier on this "
        "device. NOT a medical diagnostic tool.",
        "start_url": "./",
        "scope": "./",
        "display": "standalone",
        "background_color": "#f6f8fb",
        "theme_color": THEME,
        "icons": [
            {"src": "icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
            {"src": "icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
        ],
    }


def litert_files(npm_dir: Path, wasm: str = WASM) -> tuple[dict[str, bytes], str]:
    """The LiteRT.js files the site serves (site path -> bytes) and the package version."""
    core, utils = npm_dir / "@litertjs" / "core", npm_dir / "@litertjs" / "wasm-utils"
    need = [
        core / "package.json",
        core / "dist" / "index.js",
        utils / "dist" / "index.js",
        core / "wasm" / f"{wasm}.js",
        core / "wasm" / f"{wasm}.wasm",
    ]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise DermaiError(f"LiteRT.js is not installed ({missing[0]} missing): run `make web-deps`")
    version = json.loads((core / "package.json").read_text())["version"]
    files = {
        "litert/core/index.js": (core / "dist" / "index.js").read_bytes(),
        "litert/wasm-utils/index.js": (utils / "dist" / "index.js").read_bytes(),
        f"litert/wasm/{wasm}.js": (core / "wasm" / f"{wasm}.js").read_bytes(),
        f"litert/wasm/{wasm}.wasm": (core / "wasm" / f"{wasm}.wasm").read_bytes(),
        "litert/NOTICE.txt": (
            f"@litertjs/core and @litertjs/wasm-utils {version}, Apache License 2.0,\n"
            "https://github.com/google-ai-edge/LiteRT (litert/js). Copied unmodified from npm.\n"
        ).encode(),
    }
    return files, version


def build(
    model: bytes, npm_dir: Path, image_kind: str | None, model_name: str, wasm: str = WASM
) -> dict[str, bytes]:
    """Every file of the site: relative path -> bytes. `image_kind` None: the kind the model's
    metadata names (its training data or its OOD guard)."""
    meta = read_metadata(model)
    if not meta:
        raise DermaiError(
            "the model has no 'dermai' metadata (classes, input size): export it "
            "with `dermai export`"
        )
    if image_kind is None:
        image_kind = (
            (meta.get("training_data") or {}).get("image_kind")
            or (meta.get("ood") or {}).get("image_kind")
            or DEFAULT_IMAGE_KIND
        )
    files, litert_version = litert_files(npm_dir, wasm)
    files["model.tflite"] = float_io(model)
    files["manifest.webmanifest"] = (json.dumps(manifest(), indent=2) + "\n").encode()
    files["icon-192.png"] = icon_png(192)
    files["icon-512.png"] = icon_png(512)
    for name in ("ondevice.js", "metadata.js", "app.js"):
        files[name] = (SOURCES / name).read_bytes()
    # One stylesheet for both pages: the server page's, plus the on-device page's own rules.
    files["app.css"] = (
        (SOURCES.parent / "static" / "app.css").read_bytes()
        + b"\n"
        + (SOURCES / "page.css").read_bytes()
    )
    map_hash = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()
    page = (SOURCES / "index.html").read_text(encoding="utf-8")
    for key, value in {
        "{{DISCLAIMER}}": html.escape(DISCLAIMER),
        "{{VERSION}}": html.escape(__version__),
        "{{IMAGE_KIND}}": html.escape(image_kind),
        "{{MODEL_FILE}}": html.escape(model_name),
        "{{LITERT_VERSION}}": html.escape(litert_version),
        "{{IMPORT_MAP}}": IMPORT_MAP,
        "{{IMPORT_MAP_HASH}}": f"'sha256-{map_hash}'",
        "{{WASM}}": f"litert/wasm/{wasm}.js",
    }.items():
        page = page.replace(key, value)
    files["index.html"] = page.encode("utf-8")
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    cached = ["./", *sorted(files)]
    sw = (SOURCES / "sw.js").read_text(encoding="utf-8")
    sw = sw.replace("{{SITE_HASH}}", digest.hexdigest()[:16]).replace(
        "{{FILES}}", json.dumps(cached, indent=2)
    )
    files["sw.js"] = sw.encode("utf-8")
    return files


def run(args: argparse.Namespace) -> None:
    model_path = Path(args.model)
    if not model_path.is_file():
        raise DermaiError(f"model not found: {model_path}")
    with output_dir(args.out, "dermai export-web") as out:
        files = build(model_path.read_bytes(), Path(args.npm_dir), args.image_kind, model_path.name)
        for rel, data in sorted(files.items()):
            dest = out.staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    total = sum(len(b) for b in files.values())
    log.info(
        "wrote %d files (%.1f MB) to %s; serve it with any static host, e.g. "
        "`python -m http.server -d %s`",
        len(files),
        total / 1e6,
        args.out,
        args.out,
    )
