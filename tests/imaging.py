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
