"""Backbone cost: forward-pass images/s of EfficientNet-Lite0, Lite1 and Lite2 at the project's
input size, as ratios to Lite0 measured in this same process, and what one frozen-backbone pass
over the HAM10000 train split (8,011 images) would take at those rates.

The whole backbone (raw RGB -> pooled 1280-d features) runs under `tf.function` with
training=False, as `models/features.py` runs the frozen part for the cache. Weights are random
(`model.weights: none`): the cost does not depend on their values, and no converted file is
needed. Rounds are interleaved (Lite0, Lite1, Lite2, Lite0, ...) so a change in machine load hits
every backbone alike; each rate is the median over --batches timed batches after one warm-up.
Usage:

    python bench/bench_backbones.py                 # params.yaml's model.image_*, batch 32
    python bench/bench_backbones.py --batches 5 --batch 32 --height 150 --width 200

Numbers move with machine load (2 cores here, often shared): compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HAM_TRAIN_IMAGES = 8_011  # the lesion-aware train split of HAM10000 (docs/ham10000.md)
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--height", type=int, default=None, help="default: model.image_height")
    ap.add_argument("--width", type=int, default=None, help="default: model.image_width")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=4, help="timed batches per backbone")
    ap.add_argument("--train-images", type=int, default=HAM_TRAIN_IMAGES)
    args = ap.parse_args()

    import tensorflow as tf

    from dermai import params as params_mod
    from dermai.models.backbones import build_backbone

    prm = params_mod.load(args.params)
    h = args.height or prm.model.image_height
    w = args.width or prm.model.image_width
    x = tf.constant(
        np.random.default_rng(0).uniform(0, 255, (args.batch, h, w, 3)).astype(np.float32)
    )
    forwards = {}
    for name in BACKBONES:
        model = build_backbone(name, "none", (h, w, 3))
        fn = tf.function(lambda t, m=model: m(t, training=False))
        fn(x).numpy()  # warm-up: tracing and allocations
        forwards[name] = (fn, model.count_params())
    times: dict[str, list[float]] = {name: [] for name in BACKBONES}
    for _ in range(args.batches):
        for name in BACKBONES:
            start = time.perf_counter()
            forwards[name][0](x).numpy()
            times[name].append(time.perf_counter() - start)

    variants = prm.train.cache_variants
    print(
        f"input {h}x{w}, batch {args.batch}, {args.batches} timed batches each (median), "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op threads"
    )
    print(
        f"{'backbone':<20}{'params':>10}{'img/s':>8}{'range':>13}{'vs Lite0':>10}"
        f"{'1 pass (min)':>14}{f'x{variants} copies (min)':>20}"
    )
    base = None
    for name in BACKBONES:
        rate = args.batch / statistics.median(times[name])
        base = base or rate
        one_pass = args.train_images / rate / 60
        spread = f"{args.batch / max(times[name]):.1f}-{args.batch / min(times[name]):.1f}"
        print(
            f"{name:<20}{forwards[name][1]:>10,}{rate:>8.1f}{spread:>13}{rate / base:>10.2f}"
            f"{one_pass:>14.1f}{one_pass * variants:>20.1f}"
        )
    print(f"(1 pass = {args.train_images:,} train images through the whole backbone)")


if __name__ == "__main__":
    main()
