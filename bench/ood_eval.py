"""Which out-of-distribution guard refuses what is not a skin photo of the training kind?

Every candidate is fitted exactly as `dermai evaluate` fits the guard (`core.ood.fit`: density
on TRAIN, threshold keeping `--keep` of VAL; nothing about TEST or the OOD sets chooses it) and
measured on:

- in-domain TEST images: the share refused (target: at most 5%), and the share of TEST images
  accepted after rotations, flips and JPEG re-encoding (at the model's input size) and, with
  `--index`, when read from their original files as `dermai predict` reads a photo;
- non-skin images built offline: every scikit-image sample shipped in its wheel (those needing
  a download are skipped, and said so) and scikit-learn's two sample photos, each whole and in
  `--crops` random crops, plus seeded noise, flat colours, shapes, text pages and synthetic
  screenshots (target: at least 95% refused);
- the other domain, `--other` (a folder of images, e.g. PAD-UFES-20 clinical photos against a
  HAM10000 dermoscopy model and the reverse; target: at least 90% refused).

Candidates: today's energy of the logits; Mahalanobis and PPCA on the penultimate features;
PPCA (`core.ood.Ppca`) on the pooled frozen trunk (the lower part below the cut, which every
model carries) at several sizes; and, with `--pretrained` (the ImageNet weights file the
`pretrained` stage writes), an extra pass of the whole ImageNet backbone: PPCA on its pooled
features and on the pooled output of every stage, and its ImageNet head (refuse what the
ImageNet classifier does not file under the classes of the training images); combinations
take the smaller of the scores standardised on VAL. `ood.json` beside the model (what
`evaluate` fitted) is measured too.

Usage (a trained model with its TFRecords; about 10 min for PAD-UFES-20's 746 images, 60 min
for HAM10000's 10k on 2 busy cores; `--cache` keeps the extracted features for a rerun):
    python bench/ood_eval.py --model models/model.keras --tfrecords data/tfrecords \
        --pretrained models/pretrained/imagenet.weights.h5 --other ../shared/data/pad_ufes20/images
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dermai.core import ood
from dermai.core.preprocess import prepare

TARGETS = {"test_refused_max": 0.05, "nonskin_refused_min": 0.95, "other_refused_min": 0.90}
Score = Callable[[str], np.ndarray]  # image set name -> scores (higher = more in-domain)


# Every scikit-image sample that ships inside its wheel (the others need pooch and the network,
# which the measurement never uses): 26 images, and the first faces of `lfw_subset`.
SKIMAGE = (
    "astronaut",
    "binary_blobs",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "stereo_motorcycle",
    "text",
)
FACES = 10  # of lfw_subset's 200 25x25 grey faces


def _rgb8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype.kind == "f":  # [0, 1] floats
        img = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return img[..., :3].astype(np.uint8)


def photos() -> list[tuple[str, np.ndarray]]:
    """Natural and scientific photos shipped with scikit-image and scikit-learn (no download:
    one that would need the network is skipped, and said so)."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    out = []
    for name in SKIMAGE:
        try:
            img = getattr(sd, name)()
        except Exception as exc:  # needs pooch/network in this scikit-image: skip, say so
            print(f"skipped skimage.data.{name}: {type(exc).__name__}", file=sys.stderr)
            continue
        if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
            img = img[0]
        out.append((f"skimage:{name}", _rgb8(img)))
    for i, face in enumerate(sd.lfw_subset()[:FACES]):
        out.append((f"faces:lfw{i}", _rgb8(face)))
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
    for _ in range(6):  # shapes: filled ellipses, rectangles and polygons on a plain ground
        img = Image.new("RGB", (w * 2, h * 2), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = int(rng.integers(0, w * 2 - 20)), int(rng.integers(0, h * 2 - 20))
            x1, y1 = x0 + int(rng.integers(10, w)), y0 + int(rng.integers(10, h))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            kind = int(rng.integers(3))
            if kind == 0:
                d.ellipse((x0, y0, x1, y1), fill=fill)
            elif kind == 1:
                d.rectangle((x0, y0, x1, y1), fill=fill)
            else:
                d.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fill)
        out.append(("shapes", np.asarray(img)))
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


def other_images(folder: Path, n: int, h: int, w: int, colour: object) -> np.ndarray:
    """Up to `n` images of `folder` (a seeded sample when it holds more), as the runtimes feed
    them (EXIF orientation applied, then `core.preprocess.prepare`)."""
    from dermai.io.images import read

    exts = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)
    if not files:
        raise SystemExit(f"no images in {folder}")
    if len(files) > n:
        pick = np.random.default_rng(0).choice(len(files), n, replace=False)
        files = [files[i] for i in sorted(pick)]
    return np.stack([to_input(np.asarray(read(f)), h, w, colour) for f in files])


def batches(x: np.ndarray, n: int = 64) -> Iterator[np.ndarray]:
    for i in range(0, len(x), n):
        yield x[i : i + n]


class Extractor:
    """Every space a candidate scores, for batches of raw RGB at the model's input size."""

    def __init__(self, model: Any, pretrained: str | None, variant: str) -> None:
        import keras
        import tensorflow as tf

        from dermai.runtime.inference import features_and_logits, trunk_output

        inp = keras.Input(model.input_shape[1:], name="image")
        three = keras.Model(inp, [*features_and_logits(model)(inp), trunk_output(model, inp)])
        self.fn = tf.function(lambda x: three(x, training=False), reduce_retracing=True)
        self.imagenet = None
        if pretrained:
            from dermai.models import lite0

            h, w = (int(d) for d in model.input_shape[1:3])
            full = lite0.build_lite0(
                (h, w, 3), include_top=True, classifier_activation=None, variant=variant
            )
            full.load_weights(pretrained)
            self.stages = [
                [n for n in (layer.name for layer in full.layers) if n.startswith(f"block{i}")][-1]
                for i in range(1, 8)
            ]
            outs = [full.get_layer(n).output for n in self.stages]
            outs += [full.get_layer("avg_pool").output, full.get_layer("predictions").output]
            net = keras.Model(full.input, outs)
            self.imagenet = tf.function(lambda x: net(x, training=False), reduce_retracing=True)

    def __call__(self, xs: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        acc: dict[str, list[np.ndarray]] = {}
        for x in xs:
            x = tf.convert_to_tensor(x, tf.float32)
            parts = dict(zip(("features", "logits", "trunk"), self.fn(x), strict=True))
            if self.imagenet is not None:
                o = self.imagenet(x)
                parts["stages"] = tf.concat([tf.reduce_mean(t, axis=[1, 2]) for t in o[:7]], 1)
                parts["imagenet"], parts["imagenet_logits"] = o[7], o[8]
            for k, v in parts.items():
                acc.setdefault(k, []).append(np.asarray(v, np.float64))
        return {k: np.concatenate(v) for k, v in acc.items()}


def extract(args: argparse.Namespace) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """{set: {space: N x D}} for train, val, test, nonskin, other and the shifted TEST sets,
    and the kind of each non-skin image."""
    from dermai.models import archive
    from dermai.models import data as tfdata
    from dermai.runtime import bundle as bundle_mod

    t0 = time.monotonic()
    model = archive.load_keras(args.model)
    meta = bundle_mod.read_train_params(args.model)
    h, w, _ = meta["input_shape"]
    variant = meta.get("params", {}).get("model", {}).get("backbone", "efficientnet_lite0")
    colour = bundle_mod.colour_constancy(meta)
    run = Extractor(model, args.pretrained, variant)
    d: dict[str, dict[str, np.ndarray]] = {}
    x_test = None
    for split in ("train", "val", "test"):
        xs, ys = [], []
        for x, y in tfdata.dataset(args.tfrecords, split, 64, shuffle=False):
            xs.append(x.numpy())
            ys.append(y.numpy())
        if split == "test":
            x_test = np.concatenate(xs)[: args.max_test]
            xs = [x_test]
        d[split] = run(xs)
        d[split]["y"] = np.concatenate(ys)[: len(d[split]["logits"])]
        log(f"{split}: {len(d[split]['y'])} images ({time.monotonic() - t0:.0f} s)")
    rng = np.random.default_rng(0)
    items = [(k, c) for k, img in photos() for c in crops(img, rng, args.crops)]
    items += generated(rng, h, w)
    d["nonskin"] = run(batches(np.stack([to_input(a, h, w, colour) for _, a in items])))
    kinds = [k.split(":")[0] for k, _ in items]
    log(f"non-skin: {len(items)} images ({time.monotonic() - t0:.0f} s)")
    d["other"] = run(batches(other_images(Path(args.other), args.other_max, h, w, colour)))
    log(f"other domain: {len(d['other']['logits'])} images ({time.monotonic() - t0:.0f} s)")
    assert x_test is not None
    for name, xt in transforms(x_test, h, w).items():
        d[f"shift:{name}"] = run(batches(xt))
    if args.index:
        d["shift:originals"] = originals(args, run)
    log(f"shifted TEST ({time.monotonic() - t0:.0f} s)")
    return d, kinds


def originals(args: argparse.Namespace, run: Extractor | None = None) -> dict[str, np.ndarray]:
    """TEST read from its ORIGINAL files (`--index`'s paths under `--raw-root`) and prepared
    as `dermai predict` prepares a photo: the TFRecords hold JPEG re-encodings at the input
    size, which the threshold is set on, so this checks the guard on what a runtime sees."""
    import pandas as pd

    from dermai.io.images import read
    from dermai.models import archive
    from dermai.models import data as tfdata
    from dermai.runtime import bundle as bundle_mod

    meta = bundle_mod.read_train_params(args.model)
    h, w, _ = meta["input_shape"]
    paths = dict(pd.read_csv(args.index, dtype=str)[["image_id", "path"]].values)
    ids = [
        i.decode()
        for _, _, m in tfdata.dataset(args.tfrecords, "test", 64, shuffle=False, with_meta=True)
        for i in m["image_id"].numpy().tolist()
    ][: args.max_test]
    colour = bundle_mod.colour_constancy(meta)
    root = Path(args.raw_root)
    x = np.stack([to_input(np.asarray(read(root / paths[i])), h, w, colour) for i in ids])
    if run is None:
        variant = meta.get("params", {}).get("model", {}).get("backbone", "efficientnet_lite0")
        run = Extractor(archive.load_keras(args.model), args.pretrained, variant)
    return run(batches(x))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def save_cache(path: str, d: dict[str, dict[str, np.ndarray]], kinds: list[str]) -> None:
    flat = {f"{s}/{k}": v for s, sp in d.items() for k, v in sp.items()}
    np.savez(path, kinds=np.array(kinds), **flat)


def load_cache(path: str) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    z = np.load(path)
    d: dict[str, dict[str, np.ndarray]] = {}
    for key in z.files:
        if key != "kinds":
            s, k = key.split("/", 1)
            d.setdefault(s, {})[k] = z[key]
    return d, [str(k) for k in z["kinds"]]


def fitted(d: dict, method: str, space: str, keep: float, k: int) -> tuple[Score, float]:
    """A candidate fitted exactly as `evaluate` fits the guard (`core.ood.fit`)."""
    key = "features" if space == "penultimate" else space
    g = ood.fit(
        method,
        train_logits=d["train"]["logits"],
        train_features=d["train"][key],
        train_labels=d["train"]["y"],
        val_logits=d["val"]["logits"],
        val_features=d["val"][key],
        keep=keep,
        n_components=k,
        space="features" if key == "features" else ("logits" if key == "logits" else "trunk"),
    )
    return (lambda s: g.score(d[s]["logits"], d[s][key])), g.threshold


def ppca_wider(d: dict, k: int, factor: float) -> Score:
    """PPCA on the trunk with its off-subspace (noise) variance multiplied by `factor`: what
    lies off the top components, as JPEG artefacts do, costs less."""
    m = ood.Ppca.fit(d["train"]["trunk"], k)
    wide = ood.Ppca(m.mean, m.components, m.variances, m.noise_variance * factor)
    return lambda s: wide.score(d[s]["trunk"])


def imagenet_head(d: dict, cover: float = 0.99) -> Score:
    """log P(ImageNet class in S): S = the ImageNet top-1 classes that cover `cover` of TRAIN."""
    top = d["train"]["imagenet_logits"].argmax(1)
    cls, cnt = np.unique(top, return_counts=True)
    order = np.argsort(-cnt)
    n = int(np.searchsorted(np.cumsum(cnt[order]) / cnt.sum(), cover)) + 1
    chosen = cls[order][:n]

    def score(s: str) -> np.ndarray:
        z = d[s]["imagenet_logits"]
        return ood.logsumexp(z[:, chosen]) - ood.logsumexp(z)

    return score


def smaller_z(d: dict, *scores: Score) -> Score:
    """The smaller of the scores, each standardised on VAL: refused when either one is low."""
    stats = [(f("val").mean(), f("val").std() + 1e-12) for f in scores]
    return lambda s: np.min(
        [(f(s) - m) / sd for f, (m, sd) in zip(scores, stats, strict=True)], axis=0
    )


def candidates(d: dict, keep: float, model_dir: Path) -> dict[str, tuple[Score, float]]:
    out: dict[str, tuple[Score, float]] = {}

    def add(name: str, score: Score) -> None:
        out[name] = (score, ood.threshold_keeping(score("val"), keep))

    out["energy (logits)"] = fitted(d, "energy", "logits", keep, 0)
    out["Mahalanobis 32 (penultimate)"] = fitted(d, "mahalanobis", "penultimate", keep, 32)
    out["PPCA 16 (penultimate)"] = fitted(d, "ppca", "penultimate", keep, 16)
    for k in (4, 8, 16, 32, 64):
        out[f"PPCA {k} (trunk)"] = fitted(d, "ppca", "trunk", keep, k)
    for factor in (4, 8):  # JPEG robustness: a wider off-subspace variance forgives artefacts
        add(f"PPCA 16 (trunk), off-subspace variance x{factor}", ppca_wider(d, 16, factor))
    add(
        "PPCA 16 (trunk) + energy",
        smaller_z(d, out["PPCA 16 (trunk)"][0], out["energy (logits)"][0]),
    )
    if "imagenet" in d["train"]:
        for k in (8, 16):
            out[f"PPCA {k} (ImageNet stages 1-7)"] = fitted(d, "ppca", "stages", keep, k)
        out["PPCA 16 (ImageNet pooled)"] = fitted(d, "ppca", "imagenet", keep, 16)
        add("ImageNet head (classes of 99% of train)", imagenet_head(d))
        add(
            "ImageNet head + PPCA 16 (trunk)",
            smaller_z(d, imagenet_head(d), out["PPCA 16 (trunk)"][0]),
        )
    f = model_dir / "ood.json"
    if f.is_file():
        g = ood.Guard.from_dict(json.loads(f.read_text("utf-8")))
        key = {"trunk": "trunk", "features": "features", "logits": "logits"}[g.space]
        out[f"ood.json ({g.method}, {g.space})"] = (
            lambda s: g.score(d[s]["logits"], d[s][key]),
            g.threshold,
        )
    return out


def measure(d: dict, kinds: list[str], score: Score, t: float) -> dict[str, Any]:
    def refused(s: str) -> np.ndarray:
        return score(s) < t

    ns = refused("nonskin")
    k = np.array(kinds)
    row: dict[str, Any] = {
        "threshold": t,
        "val_refused": float(refused("val").mean()),
        "test_refused": float(refused("test").mean()),
        "nonskin_refused": float(ns.mean()),
        "other_refused": float(refused("other").mean()),
        "auroc_nonskin": ood.auroc(score("test"), score("nonskin")),
        "auroc_other": ood.auroc(score("test"), score("other")),
        "nonskin_refused_by_kind": {c: float(ns[k == c].mean()) for c in sorted(set(kinds))},
        "shifted_test_accepted": {
            s.split(":", 1)[1]: float(1 - refused(s).mean()) for s in d if s.startswith("shift:")
        },
    }
    row["targets_met"] = {
        "test": row["test_refused"] <= TARGETS["test_refused_max"],
        "nonskin": row["nonskin_refused"] >= TARGETS["nonskin_refused_min"],
        "other": row["other_refused"] >= TARGETS["other_refused_min"],
    }
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/model.keras")
    ap.add_argument("--tfrecords", default="data/tfrecords")
    ap.add_argument(
        "--pretrained", default=None, help="ImageNet weights: the extra-pass candidates"
    )
    ap.add_argument("--other", required=True, help="folder of other-domain images")
    ap.add_argument("--other-max", type=int, default=1000, help="other-domain images at most")
    ap.add_argument("--keep", type=float, default=0.95)
    ap.add_argument("--crops", type=int, default=4, help="random crops per packaged photo")
    ap.add_argument("--max-test", type=int, default=2000, help="TEST images used at most")
    ap.add_argument("--cache", default=None, help=".npz of the extracted features (reused)")
    ap.add_argument(
        "--index",
        default=None,
        help="index.csv of the model's data: TEST is also read from its original files "
        "(column originals: what predict feeds)",
    )
    ap.add_argument("--raw-root", default=".", help="the folder --index's paths are under")
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()

    t0 = time.monotonic()
    if args.cache and Path(args.cache).is_file():
        d, kinds = load_cache(args.cache)
        if args.index and "shift:originals" not in d:  # a cache from before --index
            d["shift:originals"] = originals(args)
            save_cache(args.cache, d, kinds)
    else:
        d, kinds = extract(args)
        if args.cache:
            save_cache(args.cache, d, kinds)
    n = {s: len(d[s]["logits"]) for s in ("train", "val", "test", "nonskin", "other")}
    print(
        f"model {args.model}: train {n['train']}, val {n['val']}, test {n['test']}; non-skin "
        f"{n['nonskin']} ({', '.join(f'{k} {kinds.count(k)}' for k in sorted(set(kinds)))}); "
        f"other domain {n['other']} from {args.other}; thresholds keep {args.keep:.0%} of val"
    )
    rows = {
        name: measure(d, kinds, score, t)
        for name, (score, t) in candidates(d, args.keep, Path(args.model).parent).items()
    }
    shifts = list(next(iter(rows.values()))["shifted_test_accepted"])
    print(
        f"| candidate | test refused | non-skin refused | other refused | AUROC non-skin "
        f"| AUROC other | {' | '.join(shifts)} |\n|---|---|---|---|---|---|{'---|' * len(shifts)}"
    )
    for name, r in rows.items():
        met = r["targets_met"]
        print(
            f"| {name} | {r['test_refused']:.3f}{'' if met['test'] else ' (miss)'} "
            f"| {r['nonskin_refused']:.3f}{'' if met['nonskin'] else ' (miss)'} "
            f"| {r['other_refused']:.3f}{'' if met['other'] else ' (miss)'} "
            f"| {r['auroc_nonskin']:.3f} | {r['auroc_other']:.3f} | "
            + " | ".join(f"{v:.2f}" for v in r["shifted_test_accepted"].values())
            + " |"
        )
    for name, r in rows.items():
        by = ", ".join(f"{k} {v:.2f}" for k, v in r["nonskin_refused_by_kind"].items())
        print(f"{name}: non-skin refused by kind: {by}")
    print(f"({time.monotonic() - t0:.0f} s)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
