"""The `train.ensemble` model of K single runs: measure the ensemble lever from runs already
trained with seeds train.seed, train.seed + 1, ... instead of training all K again.

`dermai train` with `train.ensemble: K` trains member k exactly as a single run with
`train.seed + k` would (`models.training.member_seed`: same frozen lower part and cache, same
starting weights, head built after that seed) and joins them with
`models.classifier.assemble_ensemble`. This script does the joining for K saved single-run
models (each `image -> lower -> upper -> head`, as `dermai train` saves them): it checks that
they share the lower part bit for bit, then writes the averaged model and a train_params.json
(the first run's, with the members' seeds). Evaluate the result like any model
(`dermai evaluate --model <out>/model.keras ...`) and compare it with `dermai compare`.
Research prototype, not a diagnostic tool. Usage:

    python bench/ensemble_from_runs.py runs/seed42 runs/seed43 runs/seed44 --out runs/ens3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "runs", nargs="+", type=Path, help="folders with model.keras, train_params.json"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from dermai.models.archive import load_keras
    from dermai.models.classifier import assemble_ensemble, copy_upper
    from dermai.models.training import save_model

    models = [load_keras(r / "model.keras") for r in args.runs]
    metas = [json.loads((r / "train_params.json").read_text()) for r in args.runs]
    # image -> lower -> upper -> head (classifier.assemble); layers[0] is the input
    lowers = [m.layers[1] for m in models]
    ref = lowers[0].get_weights()
    for r, low in zip(args.runs[1:], lowers[1:], strict=True):
        w = low.get_weights()
        if len(w) != len(ref) or not all(np.array_equal(a, b) for a, b in zip(ref, w, strict=True)):
            sys.exit(f"{r}: its frozen lower part differs from {args.runs[0]}'s (other cache?)")
    for r, meta in zip(args.runs[1:], metas[1:], strict=True):
        if meta["classes"] != metas[0]["classes"] or meta["input_shape"] != metas[0]["input_shape"]:
            sys.exit(f"{r}: other classes or input shape than {args.runs[0]}")
    uppers = [
        copy_upper(m.layers[2], m.layers[2].get_weights(), f"upper_{k}")
        for k, m in enumerate(models)
    ]
    heads = [m.layers[3] for m in models]
    shape = tuple(metas[0]["input_shape"])
    model = assemble_ensemble(lowers[0], uppers, heads, shape, metas[0]["classes"])
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out / "model.keras")
    seeds = [int(m["params"]["train"]["seed"]) for m in metas]
    doc = {
        **metas[0],
        "ensemble": {
            "seeds": seeds,
            "best_epochs": [m["best_epoch"] for m in metas],
            "assembled_from": [str(r) for r in args.runs],
        },
    }
    doc["params"]["train"]["ensemble"] = len(models)
    (args.out / "train_params.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"{len(models)} members (seeds {seeds}) -> {args.out / 'model.keras'}")


if __name__ == "__main__":
    main()
