"""Which bytes should the TFRecords hold? Re-encoded at training size, or the original files.

    python bench/bench_tfrecords_encoding.py --splits data/splits --raw ../shared/data/ham10000

Writes the train split both ways with `dermai tfrecords` (tfrecords.encoding = resized |
original) into a temp folder, then times one pass of the tf.data reader (parallel decode and
resize to the model input, no augmentation) over each, in this process. Prints shard size and
images/s for both, and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from dermai.cli import main as dermai


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--splits", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--params", default="params.yaml", help="project params (model size etc.)")
    ap.add_argument("--passes", type=int, default=2)
    args = ap.parse_args()

    from dermai.models import data as tfdata

    base = yaml.safe_load(Path(args.params).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for encoding in ("resized", "original"):
            prm = dict(base)
            prm["tfrecords"] = {**base.get("tfrecords", {}), "encoding": encoding}
            pfile = Path(tmp, f"{encoding}.yaml")
            pfile.write_text(yaml.safe_dump(prm))
            out = Path(tmp, encoding)
            assert (
                dermai(
                    [
                        "tfrecords",
                        "--params",
                        str(pfile),
                        "--splits",
                        args.splits,
                        "--raw",
                        args.raw,
                        "--out",
                        str(out),
                    ]
                )
                == 0
            )
            size = sum(f.stat().st_size for f in out.glob("train-*.tfrecord"))
            best = 0.0
            for _ in range(args.passes):
                t, n = time.perf_counter(), 0
                for x, _ in tfdata.dataset(out, "train", 64):
                    n += int(x.shape[0])
                best = max(best, n / (time.perf_counter() - t))
            results[encoding] = (size, best, n)
    for encoding, (size, rate, n) in results.items():
        print(
            f"{encoding:>8}: train shards {size / 1e6:7.1f} MB, read+decode+resize "
            f"{rate:7.0f} img/s ({n} images, best of {args.passes})"
        )
    print(f"resized / original throughput: {results['resized'][1] / results['original'][1]:.2f}")


if __name__ == "__main__":
    main()
