"""int8 agreement levers on a trained model: representative set, per-channel vs per-tensor
weights, and ops kept float (selective quantization), each measured as top-1 agreement with
the Keras model (and mean |logit difference|) on the TFRecords' val and test splits.

The representative set is calibrated once per choice (the converter's calibrate-only step) and
every variant is quantized from that calibration with `mlir_quantize`, the route
`runtime.convert` and TensorFlow's QuantizationDebugger use. The interpreter runs int8 in and out,
one thread, as the export stage does. Writes one line per variant; the table in
docs/deployment.md came from it. Usage:

    python bench/int8_levers.py models/model.keras --tfrecords data/tfrecords
    python bench/int8_levers.py models/model.keras --reps uniform200 balanced490 \\
        --variants stages0 stages2 stages3 per_tensor float_logits --splits val test

Costs one calibration per representative set (about 1 min per 200 images on 2 shared cores) and
about 40 s per variant and split.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def representative(tfrecords: Path, spec: str, seed: int) -> np.ndarray:
    """`uniform<N>`: the export stage's seeded sample; `balanced<N>`: N/classes per class."""
    from dermai.models import data as tfdata

    if spec.startswith("uniform"):
        return tfdata.representative_images(tfrecords, int(spec[7:]), seed)
    if not spec.startswith("balanced"):
        raise SystemExit(f"unknown representative set {spec!r}: uniform<N> or balanced<N>")
    xs, ys = tfdata.split_arrays(tfrecords, "train")
    k = int(ys.max()) + 1
    rng = np.random.default_rng(seed)
    per = int(spec[8:]) // k
    idx = [
        rng.choice(np.flatnonzero(ys == c), min(per, int((ys == c).sum())), replace=False)
        for c in range(k)
    ]
    return xs[np.sort(np.concatenate(idx))]


def calibrated(logits_model, rep: np.ndarray) -> bytes:
    import tensorflow as tf

    c = tf.lite.TFLiteConverter.from_keras_model(logits_model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.experimental_new_quantizer = True
    c._experimental_calibrate_only = True
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(c.convert())


def quantized(cal: bytes, variant: str) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    from dermai.runtime.convert import float_stage_pattern, op_output_names

    names = op_output_names(cal)
    nodes: list[str] = []
    per_channel = True
    if variant.startswith("stages"):
        pattern = float_stage_pattern(int(variant[6:]))
        nodes = [n for n in names if pattern and pattern.search(n)]
    elif variant == "per_tensor":
        per_channel = False
    elif variant == "float_logits":
        nodes = names[-1:]  # the last op: the logits layer
    elif variant.startswith("float:"):  # float:<layer>,<layer>: ops named after those layers
        layers = variant[6:].split(",")
        nodes = [n for n in names if any(f"/{layer}" in n for layer in layers)]
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    return bytes(
        tfl_convert.mlir_quantize(
            cal,
            disable_per_channel=not per_channel,
            input_data_type=tf.int8,
            output_data_type=tf.int8,
            denylisted_nodes=nodes or None,
        )
    )


def logits(blob: bytes, x: np.ndarray) -> np.ndarray:
    """int8 in, int8 out, dequantized, one thread: what `TfliteModel` does, without metadata."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    inp = it.get_input_details()[0]
    out = []
    for s in range(0, len(x), 64):
        chunk = x[s : s + 64]
        it.resize_tensor_input(inp["index"], [len(chunk), *x.shape[1:]])
        it.allocate_tensors()
        inp, o = it.get_input_details()[0], it.get_output_details()[0]
        (si, zi), (so, zo) = inp["quantization"], o["quantization"]
        it.set_tensor(inp["index"], np.clip(np.round(chunk / si + zi), -128, 127).astype(np.int8))
        it.invoke()
        out.append((it.get_tensor(o["index"]).astype(np.float32) - zo) * so)
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="trained .keras model")
    ap.add_argument("--tfrecords", type=Path, default=ROOT / "data" / "tfrecords")
    ap.add_argument("--reps", nargs="+", default=["uniform200"])
    ap.add_argument("--variants", nargs="+", default=["stages0", "stages2"])
    ap.add_argument("--splits", nargs="+", default=["test"])
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    import keras

    from dermai.models import data as tfdata
    from dermai.runtime.inference import logits_model

    keras.utils.set_random_seed(args.seed)
    lm = logits_model(keras.saving.load_model(args.model, compile=False))
    data = {}
    for split in args.splits:
        x, _ = tfdata.split_arrays(args.tfrecords, split)
        data[split] = (x, lm.predict(x, batch_size=64, verbose=0))
    for spec in args.reps:
        cal = calibrated(lm, representative(args.tfrecords, spec, args.seed))
        for variant in args.variants:
            blob = quantized(cal, variant)
            cells = []
            for split, (x, ref) in data.items():
                got = logits(blob, x)
                agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
                cells.append(
                    f"{split} agreement {agree:.4f} |dlogit| {np.abs(got - ref).mean():.3f}"
                )
            print(f"{spec:<12} {variant:<14} {len(blob) / 1e6:6.2f} MB  " + "  ".join(cells))


if __name__ == "__main__":
    main()
