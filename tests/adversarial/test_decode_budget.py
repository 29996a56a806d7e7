"""Issue 22, memory: a decode budget on width x height x bytes per pixel, checked before Pillow
allocates anything.

Each case failed on the landed main: PNGs under the 89.5 MP limit decoded in full (+610 MB,
and +1.85 GB for a 16-bit grey one through float64), a 632-byte JPEG claiming 9000x9000 was
indexed as a valid image and decoded at full size by `predict`. Peak memory is measured in a
fresh process (VmHWM), against the same process decoding a tiny image.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermai.core.hashing import ImageRejected, decode, inspect

LIMIT = 89_478_485
CHILD = """
import json, sys
from pathlib import Path
from dermai.core.hashing import ImageRejected
from dermai.io.images import read
try:
    img = read(Path(sys.argv[1]))
    out = list(img.size)
except ImageRejected as exc:
    out = str(exc)
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:")) * 1024
print(json.dumps({"out": out, "peak": peak}))
"""


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def peak_of(path: Path) -> dict:
    """`io.images.read(path)` in a fresh process: its result and peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def grey16_png(side: int) -> bytes:
    """A valid side x side 16-bit grey PNG of one level: small on disk, 2 bytes a pixel."""
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    raw = (b"\0" + b"\x80\x00" * side) * side

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def test_a_large_png_under_the_pixel_limit_is_refused_before_decoding():
    data = encoded(Image.new("L", (9000, 9000), 90), "PNG")  # 81 MP < 89.5 MP, ~80 KB
    with pytest.raises(ImageRejected) as err:
        inspect(data, LIMIT)
    assert str(err.value) == (
        "image too costly to decode: 9000x9000 L needs 386 MB > decode budget 128 MB "
        "(index.max_decode_bytes)"
    )
    # what the budget lets through still decodes
    assert inspect(encoded(Image.new("L", (3000, 3000), 90), "PNG"), LIMIT).width == 3000


def test_16bit_grey_is_converted_without_float64_copies(tmp_path):
    side = 3000
    (tmp_path / "g16.png").write_bytes(grey16_png(side))
    (tmp_path / "tiny.png").write_bytes(grey16_png(16))
    big, tiny = peak_of(tmp_path / "g16.png"), peak_of(tmp_path / "tiny.png")
    assert big["out"] == [side, side]
    cost = side * side * (2 + 4)  # decode_cost: 2 bytes decoded + 4 of RGB a pixel
    # The float64 path held 8 more bytes a pixel (and its rounded copy); blocks hold a few MB.
    assert big["peak"] - tiny["peak"] < 1.25 * cost, (big["peak"] - tiny["peak"]) / cost


def claims(width: int, height: int, progressive: bool = False) -> bytes:
    """A small JPEG whose frame header is patched to claim width x height."""
    data = bytearray(
        encoded(Image.new("RGB", (16, 16), (128, 90, 60)), "JPEG", progressive=progressive)
    )
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_tiny_jpeg_claiming_9000x9000_is_not_a_valid_image():
    data = claims(9000, 9000)
    assert len(data) < 1024
    with pytest.raises(ImageRejected, match=r"^truncated image: a 9000x9000 JPEG needs at least"):
        inspect(data, LIMIT)


def test_a_large_jpeg_is_drafted_to_the_budget_when_decoded_whole(tmp_path):
    """`predict` decodes whole images: a 9000x9000 JPEG (324 MB as RGB) comes out at 1/2."""
    photo = Image.new("RGB", (9000, 9000), (128, 90, 60))
    (tmp_path / "big.jpg").write_bytes(encoded(photo, "JPEG", quality=5))
    (tmp_path / "tiny.jpg").write_bytes(encoded(Image.new("RGB", (16, 16)), "JPEG"))
    got, tiny = peak_of(tmp_path / "big.jpg"), peak_of(tmp_path / "tiny.jpg")
    assert got["out"] == [4500, 4500]
    assert got["peak"] - tiny["peak"] < 1.25 * 4500 * 4500 * 4  # decode_cost of RGB at 1/2
    img, _ = decode((tmp_path / "big.jpg").read_bytes(), LIMIT, draft=(256, 256))
    assert img.size == (1125, 1125)  # a hash draft is not undone by the budget


def test_a_progressive_jpeg_counts_its_coefficients():
    data = encoded(Image.new("RGB", (9000, 9000), (128, 90, 60)), "JPEG", progressive=True)
    with pytest.raises(ImageRejected, match=r"9000x9000 RGB progressive needs 541 MB"):
        decode(data, LIMIT, draft=(256, 256))


def test_the_budget_is_a_param_named_in_the_reason(tmp_path):
    small = encoded(Image.fromarray(np.zeros((200, 300, 3), np.uint8)), "PNG")
    assert decode(small, LIMIT, budget=200 * 300 * 4)[0].size == (300, 200)
    with pytest.raises(ImageRejected, match=r"\(index.max_decode_bytes\)$"):
        decode(small, LIMIT, budget=200 * 300 * 4 - 1)
