"""The one resize rule shared by TFRecords, predict and the demo app.

Images are scaled to cover the model's input (keeping aspect ratio) and centre-cropped, so a
4:3 dermoscopy image at 150x200 is only scaled and any other shape loses a thin border rather
than being squashed. The model itself applies the (x-127)/128 input scaling.
"""

from __future__ import annotations

from PIL import Image


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
