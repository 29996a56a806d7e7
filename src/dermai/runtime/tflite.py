"""LiteRT (.tflite) models that carry their own labels and preprocessing, and a runner for them.

Metadata travels inside the model: a UTF-8 JSON document in the flatbuffer's `metadata` table
under the name `dermai` (`METADATA_NAME`), with its bytes in one of the model's buffers. This is
the schema's own extension point, the one the converter uses for its `CONVERSION_METADATA`
entry; runtimes ignore entries they do not know, so the file stays a plain LiteRT model that
any app can run, and the `.tflite` alone says which classes its outputs are, what input it
takes (size, raw [0, 255] RGB, the resize rule) and the calibration temperature. Reading it
needs only the schema module shipped with ai-edge-litert (no TensorFlow).

The models output LOGITS: temperature scaling and softmax happen after (`dermai.inference`).
A model whose OOD guard scores the frozen trunk (`core.ood.Ppca`) has a second output, the
pooled trunk features; the metadata's `outputs` names the role of each output in the model's
output order (absent: one output, the logits).
Quantized (int8/uint8) inputs and outputs are converted here with the tensors' own scale and
zero point, so callers always pass float32 raw RGB and get float32 logits.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from dermai import DISCLAIMER, __version__
from dermai.errors import DermaiError
from dermai.io.native_stderr import quiet_native

METADATA_NAME = "dermai"
METADATA_FORMAT = "dermai-tflite/1"
MAX_BATCH = 64  # larger batches are run in chunks (bounded memory)
OUTPUT_ROLES = ("logits", "trunk")  # a two-output model: logits, pooled frozen-trunk features


# --------------------------------------------------------------------------- metadata


def make_metadata(
    classes: list[str],
    height: int,
    width: int,
    *,
    temperature: float,
    quantization: str,
    ood: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
    colour_constancy: float | str = "none",
    outputs: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document embedded in every exported model (no timestamps: equal inputs, equal bytes).

    `outputs` (e.g. ["trunk", "logits"]) names each output tensor in the model's order when
    there are several (`OUTPUT_ROLES`); one output is the logits and needs no entry.

    `colour_constancy` (the model's `model.colour_constancy`) goes into `input` only when it is
    on, as {"method": "shades_of_grey", "p": p}: a model trained on corrected pixels must be fed
    corrected pixels, and the default document keeps its bytes.

    `ood` is the out-of-distribution guard (`core.ood.Guard.to_dict()` plus `image_kind` and
    the refusal `message`) so every runtime, the browser included, applies the rule the
    pipeline fitted; `training_data` names the data (`core.modelcard.dataset_of`).

    `metadata` (a model trained with `model.metadata`: `core.metadata.Encoder.to_dict()`) is
    the encoding of the model's second input tensor, the patient metadata vector; absent, the
    model takes the image alone and the document keeps its bytes."""
    meta: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "classes": list(classes),
        "input": {
            "height": int(height),
            "width": int(width),
            "channels": 3,
            "color": "RGB",
            "range": [0, 255],
            "dtype": "float32 (quantized models: see the input tensor)",
            "normalization": "none outside the model: it applies (x - 127) / 128 itself",
            "resize": "scale to cover height x width keeping aspect ratio (bicubic), then "
            "centre-crop (dermai.core.preprocess.fit)",
            "orientation": "apply EXIF orientation before resizing; ignore other EXIF",
        },
        "output": "logits",
        "temperature": float(temperature),
        "probabilities": "softmax(logits / temperature)",
        "quantization": quantization,
        "dermai_version": __version__,
        "disclaimer": DISCLAIMER,
    }
    if colour_constancy != "none":
        meta["input"]["colour_constancy"] = {
            "method": "shades_of_grey",
            "p": float(colour_constancy),
            "rule": "after the resize, on its uint8 RGB: each channel times ||e|| / (sqrt(3) "
            "e_c), e_c the channel's Minkowski p-mean, rounded half up and clipped to "
            "[0, 255] (dermai.core.preprocess.shades_of_grey)",
        }
    if outputs is not None and list(outputs) != ["logits"]:
        if sorted(outputs) != sorted(OUTPUT_ROLES):
            raise DermaiError(f"model outputs must be {OUTPUT_ROLES} in some order: {outputs}")
        meta["outputs"] = list(outputs)
    if ood is not None:
        meta["ood"] = ood
    if metadata is not None:
        meta["metadata"] = metadata
        meta["input"]["metadata"] = {
            "tensor": "the model's second input, float32 N x width (quantized models: see "
            "the tensor), the patient metadata encoded by the rules under `metadata`; every "
            "field unknown when the user gives none",
            "width": int(metadata["width"]),
        }
    if training_data is not None:
        meta["training_data"] = training_data
    return meta


def colour_constancy_of(meta: dict[str, Any]) -> float | str:
    """The p a model's metadata asks the input to be corrected with, or "none"."""
    cc = meta.get("input", {}).get("colour_constancy")
    if cc is None:
        return "none"
    if not isinstance(cc, dict) or cc.get("method") != "shades_of_grey" or "p" not in cc:
        raise DermaiError(f"unknown colour_constancy in the model metadata: {cc!r}")
    return cc["p"]


def embed_metadata(model: bytes, meta: dict[str, Any], name: str = METADATA_NAME) -> bytes:
    """Return `model` with `meta` (JSON) stored as metadata entry `name`, replacing an old one."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    payload = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buf = fb.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    obj.buffers = obj.buffers or []
    obj.metadata = obj.metadata or []
    for entry in obj.metadata:
        if entry.name.decode("utf-8") == name:
            obj.buffers[entry.buffer] = buf
            break
    else:
        entry = fb.MetadataT()
        entry.name = name
        entry.buffer = len(obj.buffers)
        obj.buffers.append(buf)
        obj.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _metadata_bytes(data: bytes | bytearray | memoryview, name: str) -> bytes | None:
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode("utf-8") != name:
            continue
        buf = model.Buffers(entry.Buffer())
        if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
            return bytes(data[buf.Offset() : buf.Offset() + buf.Size()])
        arr = buf.DataAsNumpy()
        return arr.tobytes() if isinstance(arr, np.ndarray) else b""
    return None


def read_metadata(source: str | Path | bytes, name: str = METADATA_NAME) -> dict[str, Any]:
    """The embedded `dermai` document of a .tflite file (or its bytes); {} when absent."""
    data = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    if len(data) < 8 or bytes(data[4:8]) != b"TFL3":
        raise DermaiError(
            f"{source if not isinstance(source, bytes) else 'data'} is not a "
            "LiteRT/TFLite flatbuffer"
        )
    raw = _metadata_bytes(data, name)
    if raw is None:
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DermaiError(f"{name} metadata in the model is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------- quantization


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: type[np.integer]) -> np.ndarray:
    """float -> integer tensor values: round(x / scale + zero_point), clipped to the dtype."""
    if scale <= 0:
        raise DermaiError(f"quantized tensor has no usable scale ({scale})")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(
        np.float32
    )


# --------------------------------------------------------------------------- runner


class TfliteModel:
    """One LiteRT interpreter: float32 raw RGB batches in, float32 logits out (and the pooled
    trunk features, `trunk`, when the model has that output).

    Calls are serialised with a lock (an interpreter is not thread-safe); for parallel
    inference make one TfliteModel per worker.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise DermaiError(f"model not found: {self.path}")
        self.meta = read_metadata(self.path)
        if not self.meta:
            raise DermaiError(
                f"{self.path.name} has no '{METADATA_NAME}' metadata (classes, input size): "
                "export it with `dermai export`"
            )
        self.classes: list[str] = list(self.meta["classes"])
        self.height = int(self.meta["input"]["height"])
        self.width = int(self.meta["input"]["width"])
        self.temperature = float(self.meta.get("temperature", 1.0))
        self.colour_constancy = colour_constancy_of(self.meta)
        self.num_threads = num_threads
        with quiet_native():  # LiteRT's "Created ... XNNPACK delegate" notice, on fd 2
            self._it = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self._it.allocate_tensors()
        self.roles: list[str] = list(self.meta.get("outputs", ["logits"]))
        inp, out = self._it.get_input_details(), self._it.get_output_details()
        self.metadata_width = int(self.meta.get("metadata", {}).get("width", 0))
        n_in = 2 if self.metadata_width else 1
        if len(inp) != n_in or len(out) != len(self.roles) or "logits" not in self.roles:
            raise DermaiError(
                f"{self.path.name}: expected {n_in} input and {len(self.roles)} output "
                f"tensor(s) ({', '.join(self.roles)}), found {len(inp)} and {len(out)}"
            )
        images = [i for i, d in enumerate(inp) if len(d["shape"]) == 4]
        if len(images) != 1:
            raise DermaiError(f"{self.path.name}: expected one image input, found {len(images)}")
        self._image_pos = images[0]
        self._in = inp[self._image_pos]
        self._meta_in = inp[1 - self._image_pos] if n_in == 2 else None
        if self._meta_in is not None and int(self._meta_in["shape"][-1]) != self.metadata_width:
            raise DermaiError(
                f"{self.path.name}: metadata input of width {self._meta_in['shape'][-1]}, but "
                f"its metadata says {self.metadata_width}"
            )
        self._outs = dict(zip(self.roles, out, strict=True))
        self._out = self._outs["logits"]
        shape = [int(d) for d in self._in["shape"]]
        if shape[1:] != [self.height, self.width, 3]:
            raise DermaiError(
                f"{self.path.name}: input tensor {shape} does not match its "
                f"metadata ({self.height}x{self.width}x3)"
            )
        if int(self._out["shape"][-1]) != len(self.classes):
            raise DermaiError(
                f"{self.path.name}: {self._out['shape'][-1]} outputs but "
                f"{len(self.classes)} classes in its metadata"
            )
        self._dynamic = int(self._in["shape_signature"][0]) == -1
        self._batch = shape[0]
        self._lock = threading.Lock()

    @property
    def input_dtype(self) -> type[np.generic]:
        return self._in["dtype"]

    def _set_batch(self, n: int) -> None:
        if n == self._batch:
            return
        self._it.resize_tensor_input(self._in["index"], [n, self.height, self.width, 3])
        if self._meta_in is not None:
            self._it.resize_tensor_input(self._meta_in["index"], [n, self.metadata_width])
        self._it.allocate_tensors()
        self._batch = n
        inputs = self._it.get_input_details()
        self._in = inputs[self._image_pos]
        if self._meta_in is not None:
            self._meta_in = inputs[1 - self._image_pos]
        self._outs = dict(zip(self.roles, self._it.get_output_details(), strict=True))
        self._out = self._outs["logits"]

    def _prepare(self, x: np.ndarray, tensor: dict[str, Any] | None = None) -> np.ndarray:
        tensor = self._in if tensor is None else tensor
        dtype = tensor["dtype"]
        if dtype == np.float32:
            return np.ascontiguousarray(x, dtype=np.float32)
        scale, zp = tensor["quantization"]
        return quantize(x, scale, zp, dtype)

    @property
    def has_trunk(self) -> bool:
        return "trunk" in self._outs

    def _finish(self, y: np.ndarray, out: dict[str, Any]) -> np.ndarray:
        if out["dtype"] == np.float32:
            return np.array(y, dtype=np.float32)
        scale, zp = out["quantization"]
        return dequantize(y, scale, zp)

    def _run(self, x: np.ndarray, role: str, m: np.ndarray | None = None) -> np.ndarray:
        self._it.set_tensor(self._in["index"], self._prepare(x))
        if self._meta_in is not None:
            if m is None:
                raise DermaiError(f"{self.path.name} needs its metadata input")
            self._it.set_tensor(self._meta_in["index"], self._prepare(m, self._meta_in))
        self._it.invoke()
        out = self._outs[role]
        return self._finish(self._it.get_tensor(out["index"]), out)

    def __call__(self, x: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
        """x: N x H x W x 3 float raw RGB in [0, 255] (and, for a model with a metadata input,
        m: N x width encoded metadata rows) -> N x classes float32 logits."""
        return self._batched(x, "logits", m)

    def trunk(self, x: np.ndarray) -> np.ndarray:
        """x: N x H x W x 3 float raw RGB -> N x D pooled frozen-trunk features (float32). The
        trunk does not depend on the metadata input: a model with one is fed zeros there."""
        if not self.has_trunk:
            raise DermaiError(f"{self.path.name} has no trunk output")
        m = np.zeros((len(x), self.metadata_width), np.float32) if self.metadata_width else None
        return self._batched(x, "trunk", m)

    def _batched(self, x: np.ndarray, role: str, m: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (self.height, self.width, 3):
            raise DermaiError(
                f"expected N x {self.height} x {self.width} x 3 images, got {x.shape}"
            )
        if self.metadata_width:
            if m is None or np.shape(m) != (len(x), self.metadata_width):
                raise DermaiError(
                    f"{self.path.name} takes N x {self.metadata_width} metadata rows beside "
                    f"the images, got {None if m is None else np.shape(m)}"
                )
            m = np.asarray(m, dtype=np.float32)

        def rows(a: int, b: int) -> np.ndarray | None:
            return None if m is None else m[a:b]

        outs = []
        with self._lock:
            if self._dynamic:
                for s in range(0, len(x), MAX_BATCH):
                    chunk = x[s : s + MAX_BATCH]
                    self._set_batch(len(chunk))
                    outs.append(self._run(chunk, role, rows(s, s + MAX_BATCH)))
            else:  # fixed batch (e.g. 1): one image at a time
                self._set_batch(self._batch)
                step = self._batch
                outs = [
                    self._run(x[i : i + step], role, rows(i, i + step))
                    for i in range(0, len(x), step)
                ]
        width = int(self._outs[role]["shape"][-1])
        return np.concatenate(outs) if outs else np.zeros((0, width), dtype=np.float32)


def load_tflite(
    path: str | Path, num_threads: int | None = None
) -> tuple[TfliteModel, list[str], int, int]:
    """(fn: N x H x W x 3 raw RGB -> N x classes logits, classes, height, width)."""
    model = TfliteModel(path, num_threads)
    return model, model.classes, model.height, model.width


def latency_ms(
    path: str | Path, x: np.ndarray, *, threads: int, runs: int = 50, warmup: int = 5
) -> float:
    """Median wall time (ms) of one single-image inference, after `warmup` untimed runs.

    Includes input quantization and output dequantization, i.e. what a caller pays.
    """
    model = TfliteModel(path, num_threads=threads)
    one = np.asarray(x, dtype=np.float32).reshape(1, model.height, model.width, 3)
    for _ in range(max(warmup, 0)):
        model(one)
    times = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        model(one)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)
