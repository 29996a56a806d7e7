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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import imagehash
import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from dermai.params import DECODE_BUDGET

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


# Pillow stores 1, L and P in one byte per pixel, the 16-bit modes in two, and every other mode
# (RGB padded to four) in four.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
RGB_BYTES = 4
# Decoders that hold buffers of their own beside Pillow's image, in bytes per pixel (measured:
# peak RSS of a 2048x2048 decode less Pillow's image; bench/bench_decode_budget.py): libwebp's
# ARGB planes and the frame it hands over, libheif's and libavif's YUV planes and RGB output.
DECODER_BYTES = {"WEBP": 12, "HEIF": 4, "AVIF": 8}
# Conversions to RGB work through blocks of about this many pixels, so a 16-bit or transparent
# image costs its decoded pixels plus the RGB copy, not several float64 copies.
_BLOCK_PIXELS = 1 << 18


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel Pillow allocates for an image of `mode`."""
    return _PIXEL_BYTES.get(mode, 4)


def _rows(img: Image.Image) -> Iterator[tuple[int, int]]:
    step = max(1, _BLOCK_PIXELS // max(1, img.width))
    for top in range(0, img.height, step):
        yield top, min(img.height, top + step)


def _rescaled(img: Image.Image, to8: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """A grey RGB image whose rows are `to8` of `img`'s rows, a block at a time."""
    out = Image.new("RGB", img.size)
    for top, bottom in _rows(img):
        block = np.asarray(img.crop((0, top, img.width, bottom)))
        grey = Image.fromarray(to8(block).astype(np.uint8), "L")
        out.paste(grey.convert("RGB"), (0, top))
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit and 32-bit integer modes are scaled down (Pillow's own convert clips them to 255, which
    turns a 16-bit grayscale scan white); alpha is composited onto white, which is how viewers
    show a transparent PNG. Both work a block of rows at a time in integers (16-bit) or on one
    block in float64 (float images), never on a float64 copy of the whole image.
    """
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        if mode.startswith("I;16") or img.getextrema()[1] > 255:  # type: ignore[operator]
            # round(v / 65535 * 255) == (v + 128) // 257 for every integer v: v / 257 is never
            # exactly halfway between two integers, 257 being odd.
            wide = np.uint32 if mode.startswith("I;16") else np.int64  # room for + 128
            return _rescaled(img, lambda a: np.clip((a.astype(wide) + 128) // 257, 0, 255))
        return _rescaled(img, lambda a: np.clip(a, 0, 255))
    if mode == "F":
        arr_lo, arr_hi = np.inf, -np.inf
        for top, bottom in _rows(img):
            block = np.asarray(img.crop((0, top, img.width, bottom)), dtype=np.float64)
            if not np.isnan(block).all():
                arr_lo = min(arr_lo, float(np.nanmin(block)))
                arr_hi = max(arr_hi, float(np.nanmax(block)))
        if arr_lo > arr_hi:  # every value NaN
            arr_lo = arr_hi = float("nan")
        scale = 255.0 / (arr_hi - arr_lo) if arr_hi > arr_lo else 0.0
        with np.errstate(invalid="ignore"):
            return _rescaled(
                img, lambda a: ((a.astype(np.float64) - arr_lo) * scale).astype(np.uint8)
            )
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        out = Image.new("RGB", img.size)
        for top, bottom in _rows(img):
            rgba = img.crop((0, top, img.width, bottom)).convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out.paste(Image.alpha_composite(background, rgba).convert("RGB"), (0, top))
        return out
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


def decode_cost(
    size: tuple[int, int],
    mode: str,
    fmt: str = "",
    *,
    turned: bool = False,
    coefficients: int = 0,
) -> int:
    """Peak bytes of pixels `decode_sized` holds for one image decoded at `size` in `mode`: the
    decoded pixels, the decoder's own buffers (`DECODER_BYTES` of `fmt`), the RGB copy when
    `mode` is not RGB, the turned copy when EXIF orientation applies, and a progressive JPEG's
    coefficient buffer (`coefficients` bytes)."""
    pixels = size[0] * size[1]
    return (
        pixels * (pixel_bytes(mode) + DECODER_BYTES.get(fmt, 0))
        + (pixels * RGB_BYTES if mode != "RGB" else 0)
        + (pixels * RGB_BYTES if turned else 0)
        + coefficients
    )


# Huffman-coded frames (baseline, extended, progressive): every 8x8 block of every component
# costs at least one bit (its DC symbol), so a file shorter than that is cut short or forged,
# however libjpeg fills it in. Arithmetic-coded frames have no such floor.
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2}


def _jpeg_frame(data: bytes) -> int | None:
    """The SOF marker of a JPEG (0xC0..0xCF), read from the segment headers."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _blocks(img: Image.Image) -> int:
    """8x8 blocks over every component of a JPEG, at its sampling factors."""
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * len(img.getbands())
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    return sum(
        -(-img.width * h // (8 * h_max)) * -(-img.height * v // (8 * v_max))
        for _, h, v, _ in layers
    )


def _coefficient_bytes(img: Image.Image) -> int:
    """A progressive JPEG keeps every DCT coefficient of the full image (2 bytes each) while it
    decodes, whatever the draft scale; a sequential one keeps one row of blocks."""
    return _blocks(img) * 64 * 2 if img.info.get("progressive") else 0


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def decode(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None = None,
    budget: int = DECODE_BUDGET,
) -> tuple[Image.Image, str]:
    """Fully decode `data` to an oriented RGB image, or raise ImageRejected with a reason.

    With `draft` (width, height), a JPEG at least twice that size is decoded scaled down, to no
    less than `draft` on either side (either orientation)."""
    img, fmt, _ = decode_sized(data, max_pixels, draft, budget)
    return img, fmt


def decode_sized(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None = None,
    budget: int = DECODE_BUDGET,
) -> tuple[Image.Image, str, tuple[int, int]]:
    """`decode`, plus the oriented full-resolution (width, height) of the file.

    The pixel limit and the decode budget (`decode_cost` in bytes) are checked on the header
    before any pixel is decoded. A JPEG over the budget is decoded at the largest reduction
    (1/2, 1/4, 1/8) that fits; any other image over it is rejected."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(data)
            fmt = img.format or "unknown"
            reason = too_large(img.width, img.height, max_pixels)
            if reason:
                raise ImageRejected(reason)
            size = img.size
            if fmt == "JPEG" and _jpeg_frame(data) in _HUFFMAN_SOF:
                floor = _blocks(img) // 8
                if len(data) < floor:
                    raise ImageRejected(
                        f"truncated image: a {img.width}x{img.height} JPEG needs at least "
                        f"{floor:,} bytes, the file has {len(data):,}"
                    )
            _fit_budget(img, fmt, draft, budget, _orientation(img) != 1)
            img.load()
            reason = too_large(img.width, img.height, max_pixels)  # what was decoded
            if reason:
                raise ImageRejected(reason)
            orientation = img.getexif().get(0x0112, 1)  # a PNG's eXIf may follow its pixels
            if orientation in _TRANSPOSED:
                size = (size[1], size[0])
            turned = orientation in range(2, 9)
            cost = decode_cost(img.size, img.mode, fmt, turned=turned)
            if turned and cost > budget:
                raise ImageRejected(_costly(img.size, img.mode, cost, budget, "turned"))
            rgb = to_rgb(img)
            # exif_transpose copies even an upright image: only turn what needs turning.
            oriented = ImageOps.exif_transpose(rgb) if turned else rgb
            return oriented, fmt, size
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"image too large (decompression-bomb limit {max_pixels:,} pixels): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image (Pillow cannot identify the format)") from exc
    except MemoryError as exc:
        raise ImageRejected("out of memory while decoding") from exc
    except OSError as exc:
        raise ImageRejected(f"unreadable image: {exc}") from exc
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(f"corrupt image: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # a decoder bug is one file's reject line, never a lost batch
        raise ImageRejected(f"unexpected decode failure: {type(exc).__name__}: {exc}") from exc


def _fit_budget(
    img: Image.Image, fmt: str, draft: tuple[int, int] | None, budget: int, turned: bool
) -> None:
    """Set a JPEG draft so decoding costs at most `budget` bytes (and, with `draft`, no more
    than needed), or raise ImageRejected before anything is allocated."""
    w, h = img.size
    coefficients = _coefficient_bytes(img) if fmt == "JPEG" else 0
    scale = 1
    if draft is not None and fmt == "JPEG":
        side = max(draft)
        if min(w, h) >= 2 * side:
            scale = max(s for s in (1, 2, 4, 8) if min(w, h) // s >= side)
    if fmt == "JPEG":
        # libjpeg scales by 1/2, 1/4 or 1/8: the least reduction that fits the budget (and is
        # no less than the draft asked for).
        for s in (1, 2, 4, 8):
            small = (-(-w // s), -(-h // s))
            cost = decode_cost(small, img.mode, fmt, turned=turned, coefficients=coefficients)
            if s >= scale and cost <= budget:
                if s > 1:
                    img.draft("RGB", (w // s, h // s))  # "RGB": keep the mode, scale only
                return
    cost = decode_cost((w, h), img.mode, fmt, turned=turned, coefficients=coefficients)
    if cost > budget:
        raise ImageRejected(
            _costly((w, h), img.mode, cost, budget, "progressive" if coefficients else "")
        )


def _costly(size: tuple[int, int], mode: str, cost: int, budget: int, what: str) -> str:
    return (
        f"image too costly to decode: {size[0]}x{size[1]} {mode}{' ' + what if what else ''} "
        f"needs {_mb(cost)} > decode budget {_mb(budget)} (index.max_decode_bytes)"
    )


def _orientation(img: Image.Image) -> object:
    """The EXIF orientation known from the header (any value a file holds); Pillow decodes a
    whole PNG to look for an eXIf chunk after its pixels, so that one is read after decoding."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return img.getexif().get(0x0112, 1)


def dhash_hex(img: Image.Image) -> str:
    return str(imagehash.dhash(img, hash_size=HASH_SIZE))


def phash_hex(img: Image.Image) -> str:
    return str(imagehash.phash(img, hash_size=PHASH_SIZE))


def inspect(
    data: bytes,
    max_pixels: int,
    draft: tuple[int, int] | None = HASH_DRAFT,
    budget: int = DECODE_BUDGET,
) -> ImageInfo:
    """Everything the index needs from one file's bytes (width and height at full size)."""
    img, fmt, (width, height) = decode_sized(data, max_pixels, draft, budget)
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
