"""Tiny generated test images (never ../shared)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def gradient(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    """A deterministic textured RGB image (golden-hash input)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    blobs = np.zeros((h, w))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 12)
        blobs += 90 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    arr = np.clip(base + blobs[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write_splits(tmp, counts: dict, make_image) -> tuple:
    """Raw images (`make_image(condition, k)` -> PIL) in the folder layout plus train/val/test
    CSVs in the splits contract (every 2nd row train, then alternating val/test).
    Returns (raw root, splits folder)."""
    import pandas as pd

    raw = tmp / "raw"
    rows, k = [], 0
    for cond, n in counts.items():
        for _ in range(n):
            rel = f"s/{cond}/30-59/i{k:03d}.png"
            (raw / rel).parent.mkdir(parents=True, exist_ok=True)
            (raw / rel).write_bytes(encode(make_image(cond, k), "PNG"))
            rows.append(
                {
                    "image_id": f"i{k:03d}",
                    "path": rel,
                    "condition": cond,
                    "age_group": "30-59",
                    "source": "s",
                    "group_id": "",
                    "leakage_group": f"g{k}",
                    "sha1": f"{k:040x}",
                }
            )
            k += 1
    df = pd.DataFrame(rows)
    sp = tmp / "splits"
    sp.mkdir(parents=True, exist_ok=True)
    df.iloc[::2].to_csv(sp / "train.csv", index=False)
    df.iloc[1::4].to_csv(sp / "val.csv", index=False)
    df.iloc[3::4].to_csv(sp / "test.csv", index=False)
    return raw, sp
