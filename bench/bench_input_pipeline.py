"""Is training input-bound? Training throughput fed from the TFRecords (parallel decode,
augmentation, prefetch) divided by the same training fed from in-memory tensors.

    python bench/bench_input_pipeline.py --tfrecords data/tfrecords \
        --pretrained models/pretrained/imagenet.weights.h5

Both peers train the same image model (the `feature_cache: false` path: frozen lower backbone,
top `--unfreeze` stages and head trainable, BatchNorm frozen) for the same number of steps in
this process, after a warm-up. Target: ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tfrecords", required=True)
    ap.add_argument("--pretrained", default=None, help=".weights.h5 (default: random weights)")
    ap.add_argument("--unfreeze", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from dermai.models import data as tfdata
    from dermai.models.backbones import build_backbone, split_backbone
    from dermai.models.classifier import assemble, build_head, set_phase

    meta = tfdata.read_meta(args.tfrecords)
    classes = meta["classes"]
    shape = (meta["image_height"], meta["image_width"], 3)
    weights = "imagenet" if args.pretrained else "none"
    backbone = build_backbone("efficientnet_lite0", weights, shape, args.pretrained)
    lower, upper = split_backbone(backbone, args.unfreeze)
    head = build_head(int(backbone.output.shape[-1]), len(classes), 0.3, 1e-4)
    model = assemble(lower, upper, head, shape, classes)
    set_phase(lower, upper, head, 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")

    n = len(classes)
    records = tfdata.dataset(
        args.tfrecords, "train", args.batch, training=True, seed=0, repeat=True
    ).map(lambda x, y: (x, tf.one_hot(y, n)))
    # The in-memory peer: the same augmented batches, materialised once as tensors.
    xs, ys = [], []
    for x, y in records.take(args.steps):
        xs.append(x.numpy())
        ys.append(y.numpy())
    x_mem, y_mem = np.concatenate(xs), np.concatenate(ys)
    memory = tf.data.Dataset.from_tensor_slices((x_mem, y_mem)).batch(args.batch).repeat()

    def rate(ds: tf.data.Dataset) -> float:
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # warm-up, graph tracing
        t = time.perf_counter()
        model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return args.steps * args.batch / (time.perf_counter() - t)

    results = {"tfrecords": [], "memory": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
        results["memory"].append(rate(memory))
        results["tfrecords"].append(rate(records))
    mem, rec = max(results["memory"]), max(results["tfrecords"])
    print(
        f"input {shape[0]}x{shape[1]}, batch {args.batch}, {args.steps} steps, "
        f"top {args.unfreeze} stages trainable, best of {args.repeats}"
    )
    print(
        f"in-memory tensors : {mem:7.1f} img/s  (runs: "
        + ", ".join(f"{r:.1f}" for r in results["memory"])
        + ")"
    )
    print(
        f"TFRecords pipeline: {rec:7.1f} img/s  (runs: "
        + ", ".join(f"{r:.1f}" for r in results["tfrecords"])
        + ")"
    )
    print(f"ratio TFRecords / in-memory: {rec / mem:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
