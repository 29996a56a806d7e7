"""Size of a `train.ensemble` model: the saved .keras of K members as a ratio to the single
model (K = 1) built the same way, in this same process, for several `unfreeze_blocks` (latency
and the int8 TFLite size: bench/bench_ensemble.py, whose builder this uses).

The members share the frozen lower backbone (stored once); each adds its own upper part and
head. Untrained Lite0 weights (`model.weights: none`) at a small input: the parameter count and
the file size do not depend on training or on the input size. Usage:

    python bench/bench_ensemble_size.py                       # unfreeze_blocks 3, K = 3
    python bench/bench_ensemble_size.py --unfreeze-blocks 3 6 --members 3 --classes 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unfreeze-blocks", type=int, nargs="+", default=[3])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--classes", type=int, default=7)
    args = ap.parse_args()

    from bench_ensemble import build
    from dermai.models.training import save_model

    shape = (24, 32, 3)
    for ub in args.unfreeze_blocks:
        sizes = {}
        for k in (1, args.members):
            model = build(k, ub, shape, None, args.classes)
            lower, members = model.layers[1], model.layers[2] if ub else None
            with tempfile.TemporaryDirectory() as d:
                save_model(model, os.path.join(d, "model.keras"))
                sizes[k] = os.path.getsize(os.path.join(d, "model.keras"))
            print(
                f"unfreeze_blocks={ub} K={k}: {model.count_params():,} params "
                f"(lower {lower.count_params():,}, upper "
                f"{0 if members is None else members.count_params() // k:,} per member), "
                f"model.keras {sizes[k]:,} bytes"
            )
        ratio = sizes[args.members] / sizes[1]
        print(f"unfreeze_blocks={ub}: K={args.members} / K=1 size ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
