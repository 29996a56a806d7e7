"""Golden values, invariants and every kind of bad input the index must survive."""

import io

import numpy as np
import pytest
from PIL import Image

from dermai.core.hashing import ImageRejected, decode, dhash_hex, hamming, inspect, sha1_hex
from imaging import encode, gradient

LIMIT = 10_000_000


def ramp(rows: list[bool]) -> Image.Image:
    """A 9x8 grayscale image: each row increases left->right if True, else decreases."""
    arr = np.array([np.arange(9) * 20 if up else (8 - np.arange(9)) * 20 for up in rows])
    return Image.fromarray(arr.astype(np.uint8), "L")


# dHash bit = right pixel brighter than left, row-major, first bit = most significant.
@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([True] * 8, "ffffffffffffffff"),
        ([False] * 8, "0000000000000000"),
        ([True, False] * 4, "ff00ff00ff00ff00"),
        ([False] * 7 + [True], "00000000000000ff"),
    ],
)
def test_dhash_golden_by_hand(rows, expected):
    assert dhash_hex(ramp(rows).convert("RGB")) == expected


def test_golden_values_regression():
    assert sha1_hex(b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert dhash_hex(gradient()) == "fefefefcdcccdefe"
    assert dhash_hex(gradient(seed=1)) == "fcfcfffff7e3e3e3"


def test_inspect_reports_size_format_bytes():
    data = encode(gradient(64, 48), "PNG")
    info = inspect(data, LIMIT)
    assert (info.width, info.height, info.format, info.bytes) == (64, 48, "PNG", len(data))
    assert info.sha1 == sha1_hex(data)
    assert len(info.dhash) == 16


@pytest.mark.parametrize(
    "transform",
    [
        lambda im: im.resize((im.width // 2, im.height // 2), Image.LANCZOS),
        lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2), Image.BICUBIC),
        lambda im: Image.open(io.BytesIO(encode(im, "JPEG", quality=70))),
    ],
    ids=["half-size", "upscaled", "jpeg-q70"],
)
def test_resized_or_reencoded_copy_stays_within_distance_3(transform):
    im = gradient(200, 150, seed=3)
    assert hamming(dhash_hex(im), dhash_hex(transform(im).convert("RGB"))) <= 3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text\n", "not an image"),
    ],
)
def test_non_images_rejected(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        inspect(data, LIMIT)


def test_truncated_jpeg_rejected():
    data = encode(gradient(200, 150), "JPEG", quality=90)
    with pytest.raises(ImageRejected, match="truncated|corrupt|unreadable"):
        inspect(data[: len(data) // 2], LIMIT)


def test_png_with_alpha_is_composited_on_white():
    arr = np.zeros((10, 12, 4), dtype=np.uint8)
    arr[..., 0] = 255
    arr[:, :6, 3] = 255  # left half opaque red, right half transparent
    img, fmt = decode(encode(Image.fromarray(arr, "RGBA"), "PNG"), LIMIT)
    px = np.asarray(img)
    assert fmt == "PNG" and img.mode == "RGB"
    assert tuple(px[0, 0]) == (255, 0, 0)
    assert tuple(px[0, -1]) == (255, 255, 255)


def test_16bit_grayscale_png_is_scaled_not_clipped():
    arr = (np.tile(np.linspace(0, 65535, 16), (8, 1))).astype(np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    img, _ = decode(data, LIMIT)
    px = np.asarray(img)[..., 0]
    assert px[0, 0] == 0 and px[0, -1] == 255
    assert 100 < px[0, 8] < 160  # mid-grey, not saturated white
    assert inspect(data, LIMIT).dhash == "ffffffffffffffff"


def test_cmyk_jpeg_decodes_to_rgb():
    cmyk = gradient(40, 30).convert("CMYK")
    info = inspect(encode(cmyk, "JPEG"), LIMIT)
    assert (info.width, info.height, info.format) == (40, 30, "JPEG")


def test_exif_rotation_is_applied_before_hashing():
    upright = gradient(60, 40, seed=5)
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what a camera writes sideways
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation 8: viewers rotate 90 degrees counter-clockwise
    rotated = inspect(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), LIMIT)
    plain = inspect(encode(upright, "JPEG", quality=95), LIMIT)
    assert (rotated.width, rotated.height) == (60, 40)
    assert hamming(rotated.dhash, plain.dhash) <= 2


def test_decompression_bomb_rejected():
    data = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(ImageRejected, match="too large"):
        inspect(data, max_pixels=10_000)
    assert inspect(data, max_pixels=40_000).width == 200


def test_heic_is_decoded_not_rejected():
    """iPhone photos: HEIC decodes through pillow-heif and hashes like the same picture."""
    img = gradient(64, 48, seed=3)
    info = inspect(encode(img, "HEIF", quality=95), LIMIT)
    assert (info.format, info.width, info.height) == ("HEIF", 64, 48)
    assert hamming(info.dhash, dhash_hex(img)) <= 4


def big(seed: int = 5, w: int = 1600, h: int = 1200) -> Image.Image:
    return gradient(w // 8, h // 8, seed=seed).resize((w, h), Image.Resampling.BICUBIC)


def test_draft_decode_keeps_size_and_hashes_of_full_decode():
    data = encode(big(), "JPEG", quality=90)
    full, draft = inspect(data, LIMIT, draft=None), inspect(data, LIMIT)
    assert (
        (draft.width, draft.height, draft.sha1)
        == (full.width, full.height, full.sha1)
        == (1600, 1200, full.sha1)
    )
    assert hamming(draft.dhash, full.dhash) <= 2
    assert hamming(draft.phash, full.phash) <= 12
    small, _ = decode(data, LIMIT, draft=(200, 150))
    assert min(small.size) >= 200 and small.size[0] < 1600  # scaled by libjpeg, not below


def test_draft_decode_applies_exif_orientation_and_still_rejects_truncation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    data = encode(big(), "JPEG", quality=90, exif=exif.tobytes())
    info = inspect(data, LIMIT)
    assert (info.width, info.height) == (1200, 1600)
    upright = inspect(
        encode(big().transpose(Image.Transpose.ROTATE_270), "JPEG", quality=90), LIMIT
    )
    assert hamming(info.dhash, upright.dhash) <= 4
    with pytest.raises(ImageRejected, match="truncated"):
        inspect(data[: len(data) // 2], LIMIT)


def claims(width: int, height: int) -> bytes:
    """A ~1 KB JPEG whose header claims width x height (a pixel bomb)."""
    data = bytearray(encode(gradient(), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline SOF0: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("side", [10_000, 60_000])  # over 1x and over 2x Pillow's limit
def test_a_header_over_the_limit_is_rejected_before_decoding_quoting_the_configured_limit(side):
    with pytest.raises(ImageRejected, match=r"too large.* > limit 89,478,485$"):
        decode(claims(side, side), 89_478_485)
    with pytest.raises(ImageRejected, match=r"limit 1,000$"):
        inspect(claims(40, 30), 1_000)  # the index's path: same header rule


def test_draft_decodes_a_large_jpeg_at_reduced_size_with_both_sides_covered():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), np.uint8))
    data = encode(photo, "JPEG")
    full, _ = decode(data, LIMIT)
    small, fmt = decode(data, LIMIT, draft=(140, 140))
    assert full.size == (1600, 1200) and fmt == "JPEG"
    assert small.size == (200, 150)  # 1/8 scale, the largest reduction keeping >= 140
    assert decode(data, LIMIT, draft=(700, 700))[0].size == (1600, 1200)  # not > 2x need: full
    png = encode(photo, "PNG")
    assert decode(png, LIMIT, draft=(140, 140))[0].size == (1600, 1200)  # draft is JPEG-only


def old_to_rgb(img: Image.Image) -> Image.Image:
    """The whole-image conversion `to_rgb` replaced (float64 copies): the oracle."""
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
    return img.convert("RGB")


def make(mode: str, arr: np.ndarray) -> Image.Image:
    if mode == "I;16":
        return Image.frombytes(mode, arr.shape[::-1], arr.astype("<u2").tobytes())
    if mode == "I;16B":
        return Image.frombytes(mode, arr.shape[::-1], arr.astype(">u2").tobytes())
    if mode == "I":
        return Image.fromarray(arr.astype(np.int32), "I")
    if mode == "F":
        return Image.fromarray(arr.astype(np.float32), "F")
    if mode == "P":
        img = Image.fromarray((arr % 256).astype(np.uint8), "L").convert("P")
        img.info["transparency"] = int(arr.flat[0] % 256)
        return img
    rgba = np.stack([(arr >> s) % 256 for s in (0, 3, 5, 7)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA").convert(mode)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F", "RGBA", "LA", "P"])
@pytest.mark.parametrize("scale", [255, 65535, 2**31 - 1])
def test_block_conversion_matches_the_whole_image_oracle(mode, scale, monkeypatch):
    """to_rgb converts a block of rows at a time without float64 copies (a 16-bit 9000x9000
    PNG once peaked at 3.3 GB); every pixel equals the old whole-image conversion."""
    from dermai.core import hashing

    monkeypatch.setattr(hashing, "_BLOCK_PIXELS", 37)  # many blocks, a ragged last one
    rng = np.random.default_rng(scale % 97)
    for h, w in [(1, 1), (7, 5), (13, 29)]:
        low = -scale if mode in ("I", "F") else 0
        arr = rng.integers(low, scale, (h, w), endpoint=True, dtype=np.int64)
        arr[0, 0] = 0
        if mode.startswith("I;16"):
            arr = np.clip(arr, 0, 65535)
        img = make(mode, arr)
        got, want = hashing.to_rgb(img), old_to_rgb(img)
        assert got.mode == "RGB" and np.array_equal(np.asarray(got), np.asarray(want)), (h, w)
