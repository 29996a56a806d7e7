"""The bytes each image is stored as in the TFRecords, made in worker processes.

By default (`tfrecords.encoding: resized`) an image is decoded once (EXIF orientation applied,
any format and size), fitted to the model input, colour-corrected when `model.colour_constancy`
is on (`core.preprocess.prepare`) and re-encoded as JPEG; `original` keeps the file's bytes. The
workers use PIL only: the pool is forked before TensorFlow is imported, so they stay small and
fork-safe (`pool`).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from dermai.core.hashing import ImageRejected, decode
from dermai.core.preprocess import NO_COLOUR_CONSTANCY, prepare
from dermai.errors import DermaiError

_CFG: dict = {}


def init_worker(
    raw: str,
    h: int,
    w: int,
    encoding: str,
    quality: int,
    max_pixels: int,
    colour: float | str = NO_COLOUR_CONSTANCY,
) -> None:
    _CFG.update(
        raw=Path(raw),
        h=h,
        w=w,
        encoding=encoding,
        quality=quality,
        max_pixels=max_pixels,
        colour=colour,
    )


def encode_image(path: str) -> bytes:
    """The bytes stored for one image (worker; PIL only, no TensorFlow)."""
    data = (_CFG["raw"] / path).read_bytes()
    if _CFG["encoding"] == "original":
        return data
    # Draft decoding: a 12 MP camera JPEG is scaled down in libjpeg, to no less than the input.
    img, _ = decode(data, _CFG["max_pixels"], draft=(_CFG["w"], _CFG["h"]))
    buf = io.BytesIO()
    fitted = prepare(img, _CFG["h"], _CFG["w"], _CFG.get("colour", NO_COLOUR_CONSTANCY))
    fitted.save(buf, "JPEG", quality=_CFG["quality"])
    return buf.getvalue()


def pool(
    workers: int,
    raw: str | Path,
    h: int,
    w: int,
    encoding: str,
    quality: int,
    max_pixels: int,
    colour: float | str = NO_COLOUR_CONSTANCY,
) -> Pool:
    """A worker pool whose `encode_image` reads images under `raw`; fork it before importing
    TensorFlow (the caller closes and joins it)."""
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    return ctx.Pool(
        workers,
        initializer=init_worker,
        initargs=(str(raw), h, w, encoding, quality, max_pixels, colour),
    )


def encoded(workers: Pool, rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """Each row's stored bytes, in row order, encoded by the pool; a one-line error naming the
    file that could not be read (the index had read it: the raw data changed since)."""
    images = workers.imap(encode_image, [r["path"] for r in rows], chunksize=32)
    for row in rows:
        try:
            yield next(images)
        except (ImageRejected, OSError) as exc:
            raise DermaiError(f"{row['path']}: {exc} (re-run `dermai index`)") from exc
