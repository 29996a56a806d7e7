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
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from dermai.core.hashing import ImageRejected, decode
from dermai.core.preprocess import NO_COLOUR_CONSTANCY, prepare
from dermai.errors import DermaiError
from dermai.params import DECODE_BUDGET


@dataclass(frozen=True)
class Encoding:
    """How the images under `raw` are stored: fitted to h x w, colour-corrected with `colour`
    and re-encoded as JPEG at `quality` (`encoding: resized`), or as the file's own bytes."""

    raw: Path
    h: int
    w: int
    encoding: str
    quality: int
    max_pixels: int
    colour: float | str = NO_COLOUR_CONSTANCY
    budget: int = DECODE_BUDGET  # bytes a decode may allocate: what index decoded within


_SETTINGS: list[Encoding] = []  # the worker's, set once by its initializer


def init_worker(settings: Encoding) -> None:
    _SETTINGS[:] = [settings]


def encode_image(path: str) -> bytes:
    """The bytes stored for one image (worker; PIL only, no TensorFlow)."""
    e = _SETTINGS[0]
    data = (e.raw / path).read_bytes()
    if e.encoding == "original":
        return data
    # Draft decoding: a 12 MP camera JPEG is scaled down in libjpeg, to no less than the input.
    img, _ = decode(data, e.max_pixels, draft=(e.w, e.h), budget=e.budget)
    buf = io.BytesIO()
    prepare(img, e.h, e.w, e.colour).save(buf, "JPEG", quality=e.quality)
    return buf.getvalue()


def pool(workers: int, settings: Encoding) -> Pool:
    """A worker pool whose `encode_image` stores images as `settings` says; fork it before
    importing TensorFlow (the caller closes and joins it)."""
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    return ctx.Pool(workers, initializer=init_worker, initargs=(settings,))


def encoded(workers: Pool, rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """Each row's stored bytes, in row order, encoded by the pool; a one-line error naming the
    file that could not be read (the index had read it: the raw data changed since)."""
    images = workers.imap(encode_image, [r["path"] for r in rows], chunksize=32)
    for row in rows:
        try:
            yield next(images)
        except (ImageRejected, OSError) as exc:
            raise DermaiError(f"{row['path']}: {exc} (re-run `dermai index`)") from exc
