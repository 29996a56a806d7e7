"""The one preprocessing rule shared by TFRecords, predict, serve and the on-device page.

Images are scaled to cover the model's input (keeping aspect ratio) and centre-cropped, so a
4:3 dermoscopy image at 150x200 is only scaled and any other shape loses a thin border rather
than being squashed. The model itself applies the (x-127)/128 input scaling.

Optional colour constancy (`model.colour_constancy`): Shades of Grey (Finlayson & Trezzi, 2004)
on the fitted pixels. The illuminant of each channel is the Minkowski p-mean of its values
(p = 1: grey world; p = inf: max-RGB); each channel is then scaled so that illuminant becomes
neutral grey with the same Euclidean norm (the ISIC-challenge formulation of Barata et al.), so a
colour cast is removed and brightness is kept. It runs on the fitted image, not the original,
so every runtime (the browser too) does the same arithmetic on the same few pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# The `model.colour_constancy` value that turns the step off (a number p >= 1 turns it on).
NO_COLOUR_CONSTANCY = "none"


def fit(img: Image.Image, height: int, width: int) -> Image.Image:
    """Scale `img` (RGB) to cover height x width, then centre-crop to exactly that size."""
    if img.size == (width, height):
        return img
    scale = max(width / img.width, height / img.height)
    new_w = max(width, round(img.width * scale))
    new_h = max(height, round(img.height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left = (new_w - width) // 2
    top = (new_h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def colour_p(value: object) -> float | None:
    """The Minkowski p of a `colour_constancy` setting ("none" -> None; a number >= 1, or
    inf). Runtimes call it on what a model file carries, so a bad value is refused, not
    guessed."""
    if value is None or value == NO_COLOUR_CONSTANCY:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise ValueError(
            f"colour_constancy must be {NO_COLOUR_CONSTANCY!r} or p >= 1, got {value!r}"
        )
    return float(value)


def illuminant(rgb: np.ndarray, p: float) -> np.ndarray:
    """Per-channel Minkowski p-mean of an H x W x 3 image (float64, 3 values).

    Computed as max_c * mean((x / max_c) ** p) ** (1 / p): the same value as the plain
    formula, but the ratios lie in [0, 1] and the largest is 1, so large p neither overflows
    nor underflows to 0. A channel that is 0 everywhere has illuminant 0."""
    x = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    if x.shape[0] == 0:
        raise ValueError("an empty image has no illuminant")
    m = x.max(axis=0)
    if math.isinf(p):
        return m
    safe = np.where(m > 0, m, 1.0)
    return m * np.mean((x / safe) ** p, axis=0) ** (1.0 / p)


def grey_gains(e: np.ndarray) -> np.ndarray:
    """Per-channel gains mapping illuminant `e` to grey of the same Euclidean norm:
    ||e|| / (sqrt(3) * e_c). A channel with e_c = 0 (all zero) keeps gain 1."""
    e = np.asarray(e, dtype=np.float64)
    norm = math.sqrt(float(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]))
    safe = np.where(e > 0, e, 1.0)
    return np.where(e > 0, norm / (math.sqrt(3.0) * safe), 1.0)


def shades_of_grey(rgb: np.ndarray, p: float) -> np.ndarray:
    """Shades-of-Grey colour constancy of an H x W x 3 uint8 image: uint8, same shape.

    Output = floor(x * gain_c + 0.5) clipped to [0, 255] (round half up, as the browser's
    Math.floor(v + 0.5), so the two agree to the grey level)."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {arr.shape}")
    gains = grey_gains(illuminant(arr, p))
    out = np.floor(arr.astype(np.float64) * gains + 0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def prepare(
    img: Image.Image, height: int, width: int, colour_constancy: object = None
) -> Image.Image:
    """What the model sees of an RGB image: `fit`, then Shades of Grey when
    `colour_constancy` is a p (see `colour_p`). Off, it is `fit`'s own result (the same
    object, info and all), so outputs written before the option existed keep their bytes."""
    fitted = fit(img, height, width)
    p = colour_p(colour_constancy)
    return fitted if p is None else Image.fromarray(shades_of_grey(np.asarray(fitted), p))
