"""Decode budget: peak memory for the worst image file of at most 1 KB, against a 300 MB budget.

    python bench/bench_decode_budget.py

Crafts small files whose headers claim large images (PNG in every colour type and bit depth,
with their pixel data cut short or a valid tiny stream; GIF with a large canvas; lossless WebP
of one colour; JPEG, baseline and progressive, with a patched size), each at 9000x9000 (the
size that cost +610 MB and +1.85 GB before) and at the largest square the decode budget
(`index.max_decode_bytes`, `core.hashing.decode_cost`) lets through. Each file is decoded in a
fresh process, the way `index` (`inspect`) and `predict` (`io.images.read`) do, and that
process's peak RSS (VmHWM, Linux) is printed beside the peer: the same process decoding an
ordinary 1 KB JPEG. The worst peak must stay under 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

from dermai.core.hashing import decode_cost
from dermai.params import DECODE_BUDGET

pillow_heif.register_heif_opener()  # the HEIF candidates
LIMIT_MB = 300
MAX_BYTES = 1024
CHILD = """
import json, sys
from pathlib import Path
from dermai.core.hashing import ImageRejected, inspect
from dermai.io.images import read, read_bytes
path, how = Path(sys.argv[1]), sys.argv[2]
try:
    if how == "index":
        info = inspect(read_bytes(path), 89_478_485)
        outcome = f"ok {info.width}x{info.height}"
    else:
        img = read(path)
        outcome = f"ok {img.width}x{img.height}"
except ImageRejected as exc:
    outcome = "rejected: " + str(exc)[:60]
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:")) / 1024
print(json.dumps({"outcome": outcome, "peak_mb": peak}))
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(w: int, h: int, depth: int, colour: int, rows: int = 1, exif: bool = False) -> bytes:
    """A PNG claiming w x h whose pixel stream holds `rows` zero rows (cut short if < h)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = 1 + math.ceil(w * channels * depth / 8)
    body = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if colour == 3:
        body += _chunk(b"PLTE", bytes(range(12)))
    body += _chunk(b"IDAT", zlib.compress(b"\0" * (row * rows), 9))
    if exif:  # an eXIf chunk after the pixels: orientation 6 (turn 90 degrees)
        ifd = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"
        body += _chunk(b"eXIf", ifd)
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def gif(w: int, h: int) -> bytes:
    """A GIF whose logical screen is w x h around one 1x1 frame."""
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(w: int, h: int, progressive: bool) -> bytes:
    """A tiny JPEG whose frame header is patched to claim w x h."""
    data = bytearray(
        encoded(Image.new("RGB", (16, 16), (128, 90, 60)), "JPEG", progressive=progressive)
    )
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def edge(mode: str, fmt: str = "") -> int:
    """The largest square side whose decode_cost in `mode` (and `fmt`) fits the budget."""
    side = math.isqrt(DECODE_BUDGET // decode_cost((1, 1), mode, fmt))
    while decode_cost((side + 1, side + 1), mode, fmt) <= DECODE_BUDGET:
        side += 1
    return side


def candidates() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, depth, colour, mode in [
        ("grey8", 8, 0, "L"),
        ("grey16", 16, 0, "I;16"),
        ("rgb", 8, 2, "RGB"),
        ("rgba", 8, 6, "RGBA"),
        ("palette", 8, 3, "P"),
        ("grey-alpha", 8, 4, "LA"),
        ("grey1bit", 1, 0, "1"),
    ]:
        s = edge(mode)
        out[f"png-{name}-9000"] = png(9000, 9000, depth, colour)
        out[f"png-{name}-{s}"] = png(s, s, depth, colour)
        out[f"png-{name}-{s}-eXIf-turned"] = png(s, s, depth, colour, exif=True)
    # The largest valid (complete) PNG that fits in 1 KB: one grey level.
    side = 1
    while len(png(side * 2, side * 2, 8, 0, rows=side * 2)) <= MAX_BYTES:
        side *= 2
    out[f"png-valid-grey-{side}"] = png(side, side, 8, 0, rows=side)
    s = edge("P")
    out["gif-canvas-9000"], out[f"gif-canvas-{s}"] = gif(9000, 9000), gif(s, s)
    for fmt, kw in [("WEBP", {"lossless": True}), ("AVIF", {"quality": 50}), ("HEIF", {})]:
        for side in (9000, edge("RGB", fmt), 4096, 2048):
            try:
                data = encoded(Image.new("RGB", (side, side), (120, 80, 60)), fmt, **kw)
            except (KeyError, OSError, ValueError):  # no encoder for it in this Pillow
                continue
            out[f"{fmt.lower()}-{side}"] = data
    out["jpeg-baseline-9000"] = jpeg(9000, 9000, False)
    out["jpeg-baseline-65000x1376"] = jpeg(65000, 1376, False)
    out["jpeg-progressive-9000"] = jpeg(9000, 9000, True)
    out["jpeg-progressive-3000"] = jpeg(3000, 3000, True)
    return {k: v for k, v in out.items() if len(v) <= MAX_BYTES}


def peak(path: Path, how: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), how],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--how", choices=["index", "predict", "both"], default="both")
    args = ap.parse_args()
    hows = ["index", "predict"] if args.how == "both" else [args.how]
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        peer = Path(tmp) / "peer.jpg"
        rng = np.random.default_rng(0)
        peer.write_bytes(
            encoded(Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)), "JPEG")
        )
        base = {how: peak(peer, how)["peak_mb"] for how in hows}
        print(
            f"decode budget {DECODE_BUDGET / 2**20:.0f} MiB; peer (ordinary 1 KB JPEG): "
            + ", ".join(f"{h} {base[h]:.0f} MB" for h in hows)
        )
        print(f"{'file':34} {'bytes':>5} {'path':7} {'peak MB':>8} {'x peer':>6}  outcome")
        worst = (0.0, "")
        for name, data in candidates().items():
            path = Path(tmp) / f"{name}.img"
            path.write_bytes(data)
            for how in hows:
                r = peak(path, how)
                print(
                    f"{name:34} {len(data):5d} {how:7} {r['peak_mb']:8.0f} "
                    f"{r['peak_mb'] / base[how]:6.2f}  {r['outcome']}"
                )
                worst = max(worst, (r["peak_mb"], f"{name} ({how})"))
    verdict = "under" if worst[0] < LIMIT_MB else "OVER"
    print(
        f"worst file of at most {MAX_BYTES} bytes: {worst[1]}, peak {worst[0]:.0f} MB, "
        f"{verdict} the {LIMIT_MB} MB budget (ratio {worst[0] / LIMIT_MB:.2f})"
    )


if __name__ == "__main__":
    main()
