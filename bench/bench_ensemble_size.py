"""Size of a `train.ensemble` model: the saved .keras of K members as a ratio to the single
model (K = 1) built the same way, in this same process.

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

    import keras

    from dermai.models.backbones import build_backbone, split_backbone
    from dermai.models.classifier import assemble_ensemble, build_head, copy_upper
    from dermai.models.training import save_model

    shape, classes = (24, 32, 3), [f"c{i}" for i in range(args.classes)]
    for ub in args.unfreeze_blocks:
        keras.utils.set_random_seed(42)
        backbone = build_backbone("efficientnet_lite0", "none", shape)
        lower, upper = split_backbone(backbone, ub)
        start = None if upper is None else upper.get_weights()
        sizes = {}
        for k in (1, args.members):
            uppers = [upper] + [
                None if upper is None else copy_upper(upper, start or [], f"upper_{i}")
                for i in range(1, k)
            ]
            heads = [build_head(1280, len(classes), 0.3, 0.0) for _ in range(k)]
            model = assemble_ensemble(lower, uppers, heads, shape, classes)
            with tempfile.TemporaryDirectory() as d:
                save_model(model, os.path.join(d, "model.keras"))
                sizes[k] = os.path.getsize(os.path.join(d, "model.keras"))
            print(
                f"unfreeze_blocks={ub} K={k}: {model.count_params():,} params "
                f"(lower {lower.count_params():,}, upper "
                f"{0 if upper is None else upper.count_params():,} per member), "
                f"model.keras {sizes[k]:,} bytes"
            )
        ratio = sizes[args.members] / sizes[1]
        print(f"unfreeze_blocks={ub}: K={args.members} / K=1 size ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
