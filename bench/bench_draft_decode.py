"""JPEG draft decoding for the index hashes: speed against a full decode, same duplicates found.

    python bench/bench_draft_decode.py --n 40

Generates `--n` 12 MP (4000x3000) camera-like JPEGs in a temp folder (synthetic lesions, sensor
noise; a tenth exact copies, a tenth near duplicates re-encoded at lower quality and slightly
brightened), reads them into memory, then hashes every file twice on one core with
`core.hashing.inspect`: full decode (`draft=None`) and draft decode (the default). Prints
images/s, the full/draft time ratio, and the exact + dHash/pHash-verified duplicate pairs found by
each (the dedup defaults), which must be the same set.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dermai.core.groups import exact_pairs
from dermai.core.hashing import inspect
from dermai.core.neardup import hex_to_uint64, pairs_within_radius, phash_distances
from dermai.core.synth import lesion_image
from dermai.params import DedupParams, IndexParams

W, H = 4000, 3000


def camera_jpeg(rng: np.random.Generator, cond: str, quality: int = 92) -> bytes:
    small = lesion_image(cond, rng, H // 8, W // 8)
    img = Image.fromarray(small).resize((W, H), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.normal(0, 6, size=(H, W, 1)).astype(np.int16)
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make(n: int, folder: Path, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    conds = ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]
    n_copy = n_near = max(1, n // 10)
    datas = [camera_jpeg(rng, conds[k % len(conds)]) for k in range(n - n_copy - n_near)]
    datas += [datas[k] for k in range(n_copy)]
    for k in range(n_near):
        img = Image.open(io.BytesIO(datas[n_copy + k]))
        arr = np.clip(np.asarray(img, dtype=np.int16) + 6, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=80)
        datas.append(buf.getvalue())
    for k, d in enumerate(datas):
        (folder / f"img{k:03d}.jpg").write_bytes(d)
    return [(folder / f"img{k:03d}.jpg").read_bytes() for k in range(len(datas))]


def duplicate_pairs(infos: list) -> set[tuple[int, int, str]]:
    """The dedup stage's pairs: exact SHA1, and dHash candidates verified by pHash-256."""
    cfg = DedupParams()
    sha = [i.sha1 for i in infos]
    near = pairs_within_radius(hex_to_uint64([i.dhash for i in infos]), cfg.dhash_max_distance)
    near = (
        near[np.array([sha[a] != sha[b] for a, b in near[:, :2]], dtype=bool)]
        if len(near)
        else near
    )
    ph = [i.phash for i in infos]
    keep = phash_distances(ph, near[:, 0], near[:, 1]) <= cfg.verify_max_distance
    out = {(int(a), int(b), "exact") for a, b in exact_pairs(sha)}
    out |= {(int(a), int(b), "perceptual") for a, b in near[keep][:, :2]}
    return out


def run(datas: list[bytes], draft: bool) -> tuple[float, list]:
    limit = IndexParams().max_pixels
    t = time.perf_counter()
    infos = [inspect(d, limit) if draft else inspect(d, limit, draft=None) for d in datas]
    return time.perf_counter() - t, infos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="images to generate (12 MP each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        datas = make(args.n, Path(tmp), args.seed)
        mb = sum(map(len, datas)) / 1e6
        print(
            f"generated {len(datas)} JPEGs {W}x{H} ({mb:.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
    t_full, full = run(datas, draft=False)
    t_draft, draft = run(datas, draft=True)
    n = len(datas)
    print(f"full decode : {n / t_full:6.2f} img/s ({t_full:.1f} s)")
    print(f"draft decode: {n / t_draft:6.2f} img/s ({t_draft:.1f} s)")
    print(f"ratio full/draft time: {t_full / t_draft:.2f}x")
    assert [(i.width, i.height, i.sha1) for i in full] == [
        (i.width, i.height, i.sha1) for i in draft
    ]
    pf, pd_ = duplicate_pairs(full), duplicate_pairs(draft)
    dmax = max(
        bin(int(a.dhash, 16) ^ int(b.dhash, 16)).count("1")
        for a, b in zip(full, draft, strict=True)
    )
    print(
        f"duplicate pairs full: {len(pf)}, draft: {len(pd_)}, same set: {pf == pd_}; "
        f"max dHash change per image: {dmax} bits"
    )
    if pf != pd_:
        raise SystemExit(
            f"draft decoding changed the duplicates: only full {sorted(pf - pd_)}, "
            f"only draft {sorted(pd_ - pf)}"
        )


if __name__ == "__main__":
    main()
