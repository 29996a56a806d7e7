"""Choose `dedup.dhash_max_distance` by measurement on a real image set (e.g. HAM10000).

For a sample of images, makes resized, JPEG-re-encoded and slightly cropped copies and measures
the recall of each kind of copy at each dHash radius, without and with the pHash-256
verification (`dedup.verify_max_distance`). Against it, it counts the "false pairs" among the
originals (pairs within the radius whose images belong to different lesions and are not
byte-identical) and the size of the largest leakage group they would chain into. Usage:

    python bench/dhash_radius.py --index data/index/index.csv --raw ../shared/data/ham10000
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import pandas as pd
from PIL import Image

from dermai.core.groups import leakage_components
from dermai.core.hashing import decode, dhash_hex, phash_hex
from dermai.core.neardup import hex_to_uint64, pairs_within_radius, phash_distances


def variants(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size

    def jpeg(im: Image.Image, q: int) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    def crop(frac: float) -> Image.Image:
        dx, dy = max(1, round(w * frac / 2)), max(1, round(h * frac / 2))
        return img.crop((dx, dy, w - dx, h - dy))

    return {
        "resize_0.5": img.resize((w // 2, h // 2), Image.LANCZOS),
        "resize_0.75": img.resize((w * 3 // 4, h * 3 // 4), Image.BILINEAR),
        "upscale_2x": img.resize((w * 2, h * 2), Image.BICUBIC),
        "jpeg_q70": jpeg(img, 70),
        "jpeg_q50": jpeg(img, 50),
        "crop_2%": crop(0.02),
        "crop_5%": crop(0.05),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--n", type=int, default=1000, help="images to copy")
    ap.add_argument("--max-radius", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify", type=int, default=48, help="pHash-256 max distance")
    args = ap.parse_args()

    ix = pd.read_csv(args.index, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(ix), size=min(args.n, len(ix)), replace=False)
    dist: dict[str, list[int]] = {}
    pdist: dict[str, list[int]] = {}
    for i in pick:
        row = ix.iloc[int(i)]
        with open(f"{args.raw}/{row['path']}", "rb") as fh:
            img, _ = decode(fh.read(), 10**9)
        h0, p0 = int(row["dhash"], 16), int(row["phash"], 16)
        for name, im in variants(img).items():
            im = im.convert("RGB")
            dist.setdefault(name, []).append((h0 ^ int(dhash_hex(im), 16)).bit_count())
            pdist.setdefault(name, []).append((p0 ^ int(phash_hex(im), 16)).bit_count())

    hashes = hex_to_uint64(ix["dhash"].tolist())
    pairs = pairs_within_radius(hashes, args.max_radius)
    g = ix["group_id"].to_numpy()
    sha = ix["sha1"].to_numpy()
    a, b, d = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    same_group = (g[a] == g[b]) & (g[a] != "")
    identical = sha[a] == sha[b]
    false = ~same_group & ~identical
    verified = phash_distances(ix["phash"].tolist(), a, b) <= args.verify

    kinds = list(dist)
    print(
        f"{len(pick)} images copied; {len(ix)} originals for false pairs; "
        f"verification: pHash-256 <= {args.verify}"
    )
    print(
        "copies' pHash-256 distance, max: " + ", ".join(f"{k} {max(v)}" for k, v in pdist.items())
    )
    for label, keep in (("dHash only", np.ones_like(verified)), ("dHash + verify", verified)):
        print(f"\n{label}: recall of copies per kind; false pairs; largest leakage group")
        print(
            "radius | " + " | ".join(f"{k:>11}" for k in kinds) + " | false pairs | largest group"
        )
        for r in range(args.max_radius + 1):
            ok = [
                (np.array(dist[k]) <= r)
                & ((np.array(pdist[k]) <= args.verify) | (label == "dHash only"))
                for k in kinds
            ]
            sel = keep & (d <= r)
            comp = leakage_components(len(ix), pairs[sel, :2], g.tolist())
            print(
                f"{r:>6} | "
                + " | ".join(f"{x.mean():>11.3f}" for x in ok)
                + f" | {int((false & sel).sum()):>11} | {int(np.bincount(comp).max()):>13}"
            )


if __name__ == "__main__":
    main()
