"""Test-time augmentation cost: the time to predict one batch with tta flips / dihedral, as a
ratio to the no-TTA run of the same batch on the same predictor, in this same process.

By default the synthetic tiny model of the tests (`tests/tinymodel.py`, square input, so both
modes apply); give a trained .keras to time it instead (dihedral is skipped for a non-square
input). Each time is the median of --runs predictions of --batch images after one warm-up call,
through `runtime.bundle.Bundle.analyse`, as `dermai predict` and `serve` run it.
Usage:

    python bench/bench_tta.py
    python bench/bench_tta.py --model models/model.keras --batch 32 --runs 5

Numbers move with machine load (2 cores here, often shared): compare within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up: graph tracing and allocations
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a trained .keras (default: the tiny model)")
    ap.add_argument("--size", type=int, default=64, help="the tiny model's square input side")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from dermai.core import tta
    from dermai.errors import DermaiError
    from dermai.runtime import bundle as bundle_mod

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            path = Path(args.model)
        else:
            import tinymodel

            classes = ["a", "b", "c"]
            model = tinymodel.build(classes, h=args.size, w=args.size)
            path = tinymodel.save(model, Path(tmp), classes)
        base = dataclasses.replace(bundle_mod.load(path), tta="none")
        x = np.random.default_rng(0).uniform(0, 255, (args.batch, base.height, base.width, 3))
        x = x.astype(np.float32)
        print(f"model {path.name}: input {base.height}x{base.width}, batch {args.batch}")
        peer = median_seconds(lambda: base.analyse(x).probabilities, args.runs)
        print(f"{'none':>8}: 1 view  {1e3 * peer:8.1f} ms/batch  ratio 1.00")
        for mode in ("flips", "dihedral"):
            try:
                pred = dataclasses.replace(base, tta=mode)
            except DermaiError as exc:
                print(f"{mode:>8}: skipped ({exc})")
                continue
            s = median_seconds(lambda p=pred: p.analyse(x).probabilities, args.runs)
            n = len(tta.views(mode, base.height, base.width))
            print(f"{mode:>8}: {n} views {1e3 * s:8.1f} ms/batch  ratio {s / peer:.2f}")


if __name__ == "__main__":
    main()
