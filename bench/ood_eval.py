"""Compare out-of-distribution scores on a trained model: which one should guard the demo?

For each candidate (max-softmax, energy, Mahalanobis on penultimate features, Mahalanobis on
logits) the guard is fitted exactly as `dermai evaluate` fits it (TRAIN means/covariance,
threshold keeping `--keep` of VAL) and measured on:

- AUROC of TEST images (in distribution) against a non-dermoscopy set built only from packaged
  or generated images: scikit-image and scikit-learn sample photos (several crops each), noise,
  flat colours, text and synthetic screenshots;
- the share of TEST images accepted, and of non-dermoscopy images accepted (false accepts);
- the share of TEST images accepted after rotations, flips and JPEG re-encoding.

Usage (after `dvc repro train`; sample model or the HAM10000 one):
    python bench/ood_eval.py --model models/model.keras --tfrecords data/tfrecords
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dermai.core import ood
from dermai.core.preprocess import prepare

CANDIDATES = (
    ("max_softmax", "logits"),
    ("energy", "logits"),
    ("mahalanobis", "features"),
    ("mahalanobis", "logits"),
)


def photos() -> list[tuple[str, np.ndarray]]:
    """Natural and scientific photos shipped with scikit-image and scikit-learn."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    out = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "camera",
        "brick",
        "grass",
        "gravel",
        "moon",
        "page",
        "text",
        "horse",
        "retina",
        "colorwheel",
        "logo",
        "motorcycle_left",
    ):
        try:
            img = np.asarray(getattr(sd, name)())
        except Exception as exc:  # some need pooch/network: skip, and say so
            print(f"skipped skimage.data.{name}: {type(exc).__name__}", file=sys.stderr)
            continue
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append((f"skimage:{name}", img[..., :3].astype(np.uint8)))
    for i, img in enumerate(load_sample_images().images):
        out.append((f"sklearn:sample{i}", img))
    return out


def generated(rng: np.random.Generator, h: int, w: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for _ in range(6):
        out.append(("noise:uniform", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        out.append(
            ("noise:gaussian", np.clip(rng.normal(128, 50, (h, w, 3)), 0, 255).astype(np.uint8))
        )
    for colour in (
        (255, 255, 255),
        (0, 0, 0),
        (128, 128, 128),
        (225, 180, 150),
        (200, 30, 30),
        (30, 160, 60),
        (40, 60, 200),
        (250, 220, 60),
    ):
        out.append(("flat", np.full((h, w, 3), colour, np.uint8)))
    for _ in range(6):
        img = Image.new("RGB", (w * 2, h * 2), tuple(int(v) for v in rng.integers(200, 256, 3)))
        d = ImageDraw.Draw(img)
        for line in range(12):
            d.text(
                (4, 4 + 12 * line),
                f"Lorem ipsum dolor sit amet {rng.integers(1e6)}",
                fill=(0, 0, 0),
            )
        out.append(("text", np.asarray(img)))
    for _ in range(6):  # a synthetic app screenshot: title bar, panels, buttons, text
        img = Image.new("RGB", (w * 2, h * 2), (245, 245, 245))
        d = ImageDraw.Draw(img)
        d.rectangle((0, 0, w * 2, 18), fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
        for _ in range(5):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(20, h))
            d.rectangle(
                (x0, y0, x0 + int(rng.integers(30, w)), y0 + int(rng.integers(12, 40))),
                fill=tuple(int(v) for v in rng.integers(150, 256, 3)),
                outline=(90, 90, 90),
            )
            d.text((x0 + 3, y0 + 2), "Button", fill=(0, 0, 0))
        out.append(("screenshot", np.asarray(img)))
    return out


def crops(img: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """The whole image and n random crops of half to full size (more OOD samples per photo)."""
    out = [img]
    hh, ww = img.shape[:2]
    for _ in range(n):
        s = rng.uniform(0.5, 1.0)
        ch, cw = max(8, int(hh * s)), max(8, int(ww * s))
        y, x = int(rng.integers(0, hh - ch + 1)), int(rng.integers(0, ww - cw + 1))
        out.append(img[y : y + ch, x : x + cw])
    return out


def to_input(arr: np.ndarray, h: int, w: int, colour: object = "none") -> np.ndarray:
    """A new image as the runtimes feed it (`core.preprocess.prepare`: fit, then the model's
    colour constancy)."""
    return np.asarray(prepare(Image.fromarray(arr), h, w, colour), dtype=np.float32)


def transforms(x: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
    """TEST images (raw RGB at input size) after rotations, flips and JPEG re-encoding (read
    from the TFRecords, so already colour-corrected when the model is: fit only here)."""

    def each(fn: Any) -> np.ndarray:
        return np.stack(
            [to_input(fn(Image.fromarray(np.clip(im, 0, 255).astype(np.uint8))), h, w) for im in x]
        )

    def jpeg(q: int) -> Any:
        def f(im: Image.Image) -> np.ndarray:
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=q)
            return np.asarray(Image.open(buf).convert("RGB"))

        return f

    T = Image.Transpose
    return {
        "rot90": each(lambda im: np.asarray(im.transpose(T.ROTATE_90))),
        "rot180": each(lambda im: np.asarray(im.transpose(T.ROTATE_180))),
        "rot270": each(lambda im: np.asarray(im.transpose(T.ROTATE_270))),
        "flip_lr": each(lambda im: np.asarray(im.transpose(T.FLIP_LEFT_RIGHT))),
        "flip_tb": each(lambda im: np.asarray(im.transpose(T.FLIP_TOP_BOTTOM))),
        "jpeg_q70": each(jpeg(70)),
        "jpeg_q40": each(jpeg(40)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/model.keras")
    ap.add_argument("--tfrecords", default="data/tfrecords")
    ap.add_argument("--keep", type=float, default=0.95)
    ap.add_argument("--components", type=int, default=32)
    ap.add_argument("--crops", type=int, default=4, help="random crops per packaged photo")
    ap.add_argument("--max-test", type=int, default=2000, help="TEST images used at most")
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()

    import keras

    from dermai.runtime.guard import guard_inputs
    from dermai.runtime.inference import features_and_logits

    t0 = time.monotonic()
    model = keras.saving.load_model(args.model, compile=False)
    h, w = (int(d) for d in model.inputs[0].shape[1:3])
    fl = features_and_logits(model)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, z = fl.predict(x, batch_size=64, verbose=0)
        return np.asarray(f, np.float64), np.asarray(z, np.float64)

    d = {s: guard_inputs(model, args.tfrecords, s) for s in ("train", "val")}
    from dermai.models import data as tfdata

    xs = []
    for x, _y in tfdata.dataset(args.tfrecords, "test", 64, shuffle=False):
        xs.append(x.numpy())
    x_test = np.concatenate(xs)[: args.max_test]
    test_f, test_z = run(x_test)
    rng = np.random.default_rng(0)
    ood_items = [(k, c) for k, img in photos() for c in crops(img, rng, args.crops)]
    ood_items += generated(rng, h, w)
    # new photos get the colour constancy the TFRecords (so the model) were made with
    colour = tfdata.read_meta(args.tfrecords).get("colour_constancy", "none")
    x_ood = np.stack([to_input(a, h, w, colour) for _, a in ood_items])
    kinds = [k.split(":")[0] for k, _ in ood_items]
    ood_f, ood_z = run(x_ood)
    shifted = {name: run(xt) for name, xt in transforms(x_test, h, w).items()}
    print(
        f"model {args.model}: train {len(d['train']['y'])}, val {len(d['val']['y'])}, test "
        f"{len(x_test)} images; non-dermoscopy set {len(x_ood)} images "
        f"({', '.join(f'{k} {kinds.count(k)}' for k in sorted(set(kinds)))}); "
        f"keep {args.keep:.0%} of val"
    )

    results = {}
    header = f"{'method':<24}{'AUROC':>7}{'test acc':>10}{'OOD acc':>9}  " + " ".join(
        f"{n:>8}" for n in shifted
    )
    print(header)
    for method, space in CANDIDATES:
        g = ood.fit(
            method,
            train_logits=d["train"]["logits"],
            train_features=d["train"]["features"],
            train_labels=d["train"]["y"],
            val_logits=d["val"]["logits"],
            val_features=d["val"]["features"],
            keep=args.keep,
            n_components=args.components,
            space=space,
        )
        s_in, s_out = g.score(test_z, test_f), g.score(ood_z, ood_f)
        row = {
            "auroc": ood.auroc(s_in, s_out),
            "accepted_test": float(np.mean(s_in >= g.threshold)),
            "accepted_ood": float(np.mean(s_out >= g.threshold)),
            "accepted_ood_by_kind": {
                k: float(np.mean((s_out >= g.threshold)[np.array(kinds) == k]))
                for k in sorted(set(kinds))
            },
            "accepted_shifted": {
                n: float(np.mean(g.accept(z, f))) for n, (f, z) in shifted.items()
            },
        }
        name = f"{method}/{space}" if method == "mahalanobis" else method
        results[name] = row
        print(
            f"{name:<24}{row['auroc']:>7.4f}{row['accepted_test']:>10.3f}"
            f"{row['accepted_ood']:>9.3f}  "
            + " ".join(f"{v:>8.3f}" for v in row["accepted_shifted"].values())
        )
    for name, row in results.items():
        print(f"{name}: OOD accepted by kind {row['accepted_ood_by_kind']}")
    print(f"({time.monotonic() - t0:.0f} s)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
