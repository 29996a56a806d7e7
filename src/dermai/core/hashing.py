"""Decode, normalise and hash one image held in memory.

Every file is fully decoded (a truncated JPEG must fail here, not during training) and EXIF
orientation is applied before hashing, so a rotated-on-disk copy hashes like what a viewer shows.
Large JPEGs are decoded in draft mode (libjpeg's DCT scaling, 1/2..1/8 size) when only a hash or
a small copy is needed: every scan is still read, so truncation still fails, at a fraction of the
cost (bench/bench_draft_decode.py). HEIC/HEIF (iPhone photos) decode through pillow-heif.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

HASH_SIZE = 8  # 8x8 dHash -> 64 bits -> 16 hex chars
# 16x16 pHash -> 256 bits -> 64 hex chars. It verifies dHash candidates: on dermoscopy images the
# dark vignette makes 64-bit dHashes of different lesions collide (see README, dedup).
PHASH_SIZE = 16
# Hashes shrink to 9x8 (dHash) and 64x64 (pHash); a draft at least this large on each side keeps
# them (see bench/bench_draft_decode.py). Smaller images are decoded at full size as before.
HASH_DRAFT = (256, 256)
# EXIF orientations that swap width and height.
_TRANSPOSED = {5, 6, 7, 8}


class ImageRejected(Exception):
    """The bytes are not a usable image; the message is the reject reason."""


@dataclass(frozen=True)
class ImageInfo:
    sha1: str
    dhash: str
    phash: str
    width: int
    height: int
    format: str
    bytes: int


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit integer modes are scaled down (Pillow's own convert clips them to 255, which
    turns a 16-bit grayscale scan white); alpha is composited onto white, which is how viewers
    show a transparent PNG.
    """
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(((arr - lo) * scale).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    return img


_OPEN_LOCK = threading.Lock()


def _open(data: bytes) -> Image.Image:
    """Image.open (reads the header only) with Pillow's own bomb check off: the caller checks
    the header size against its configured limit, so the message quotes that limit and not
    Pillow's 2x hard limit. The lock keeps the global switch consistent across threads."""
    with _OPEN_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = old


def too_large(width: int, height: int, max_pixels: int) -> str | None:
    """The reject reason for a header size over the limit, or None."""
    if width * height > max_pixels:
        return (
            f"image too large: {width}x{height} = {width * height:,} pixels > limit {max_pixels:,}"
        )
    return None


def decode(
    data: bytes, max_pixels: int, draft: tuple[int, int] | None = None
) -> tuple[Image.Image, str]:
    """Fully decode `data` to an oriented RGB image, or raise ImageRejected with a reason.

    With `draft` (width, height), a JPEG at least twice that size is decoded scaled down, to no
    less than `draft` on either side (either orientation)."""
    img, fmt, _ = decode_sized(data, max_pixels, draft)
    return img, fmt


def decode_sized(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None = None,
) -> tuple[Image.Image, str, tuple[int, int]]:
    """`decode`, plus the oriented full-resolution (width, height) of the file.

    The pixel limit is checked on the header before any pixel is decoded."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(data) as img:
                fmt = img.format or "unknown"
                reason = too_large(img.width, img.height, max_pixels)
                if reason:
                    raise ImageRejected(reason)
                size = img.size
                if img.getexif().get(0x0112, 1) in _TRANSPOSED:
                    size = (size[1], size[0])
                if draft is not None and fmt == "JPEG":
                    side = max(draft)
                    if min(img.size) >= 2 * side:
                        img.draft("RGB", (side, side))  # each side stays >= side
                img.load()
                reason = too_large(img.width, img.height, max_pixels)  # what was decoded
                if reason:
                    raise ImageRejected(reason)
                oriented = ImageOps.exif_transpose(img)
                return to_rgb(oriented), fmt, size
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"image too large (decompression-bomb limit {max_pixels:,} pixels): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image (Pillow cannot identify the format)") from exc
    except OSError as exc:
        raise ImageRejected(f"unreadable image: {exc}") from exc
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(f"corrupt image: {type(exc).__name__}: {exc}") from exc


def dhash_hex(img: Image.Image) -> str:
    return str(imagehash.dhash(img, hash_size=HASH_SIZE))


def phash_hex(img: Image.Image) -> str:
    return str(imagehash.phash(img, hash_size=PHASH_SIZE))


def inspect(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None = HASH_DRAFT,
) -> ImageInfo:
    """Everything the index needs from one file's bytes (width and height at full size)."""
    img, fmt, (width, height) = decode_sized(data, max_pixels, draft)
    return ImageInfo(
        sha1=sha1_hex(data),
        dhash=dhash_hex(img),
        phash=phash_hex(img),
        width=width,
        height=height,
        format=fmt,
        bytes=len(data),
    )


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
