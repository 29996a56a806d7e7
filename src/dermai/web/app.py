"""The demo web app: upload or take a photo, see the top-3 conditions, a Grad-CAM overlay and
the not-a-diagnosis notice.

Privacy: an upload is read into memory and nowhere else. The request body is read here, capped
at the size limit, and parsed with python-multipart's streaming parser into a bytearray, because
Starlette's own form parser spools any file over 1 MiB to a temporary file on disk. Nothing is
logged about an image beyond its byte count. EXIF is ignored except orientation
(`core.hashing.decode`).

Load: inference runs in a worker thread, at most `workers` at a time (semaphore). Up to
`max_queue` more requests wait their turn; beyond that a request is refused at once with
503 and `Retry-After`, before its body is read, so memory stays bounded by
(workers + max_queue) x the upload limit.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dermai import DISCLAIMER, __version__
from dermai.core.hashing import ImageRejected, decode
from dermai.core.preprocess import fit

log = logging.getLogger(__name__)

# Plain-language names for HAM10000's codes (other class lists show their codes).
LABELS = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus (mole)",
    "vasc": "Vascular lesion",
}
FIELD = "file"  # the multipart field that carries the image
SLACK = 64 * 1024  # multipart framing and small fields allowed on top of the file limit
TOP_K = 3
DISPLAY_SCALE = 2  # the Grad-CAM overlay is drawn on the model's crop at this scale
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "geolocation=(), microphone=()",
}


class UploadError(Exception):
    """A refused request: HTTP status and a one-line message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"error": message, "disclaimer": DISCLAIMER}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


# --------------------------------------------------------------------------- upload


class _Collector:
    """python-multipart callbacks that keep the `file` part in memory, capped at `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: bytearray | None = None
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._in_file = False

    def on_part_begin(self) -> None:
        self._disposition, self._in_file = b"", False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == FIELD.encode():
            if self.data is not None:
                raise UploadError(400, "send one image per request")
            self.data = bytearray()
            self._in_file = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        assert self.data is not None
        if len(self.data) + (end - start) > self.limit:
            raise UploadError(413, f"image too large: the limit is {_mb(self.limit)}")
        self.data += data[start:end]

    def on_part_end(self) -> None:
        self._in_file = False

    def on_end(self) -> None:
        self.ended = True


async def read_upload(request: Request, limit: int) -> bytes:
    """The bytes of the `file` field of a multipart/form-data request, never touching disk."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise UploadError(415, f"send the image as multipart/form-data, field '{FIELD}'")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "malformed upload: multipart boundary missing")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + SLACK:
        raise UploadError(413, f"image too large: the limit is {_mb(limit)}")
    sink = _Collector(limit)
    callbacks = {name: getattr(sink, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished", "on_part_data", "on_part_end", "on_end")}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + SLACK:
                raise UploadError(413, f"image too large: the limit is {_mb(limit)}")
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise UploadError(400, f"malformed upload: {exc}".splitlines()[0]) from exc
    if not sink.ended:
        raise UploadError(400, "malformed upload: the multipart body is incomplete")
    if sink.data is None:
        raise UploadError(400, f"no image in the upload (expected field '{FIELD}')")
    if not sink.data:
        raise UploadError(400, "the uploaded file is empty")
    return bytes(sink.data)


# --------------------------------------------------------------------------- inference


def _png_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rejection(reason: str) -> UploadError:
    """core.hashing's reject reason -> HTTP status and a message for a person."""
    if reason.startswith("image too large"):
        return UploadError(413, reason)
    if reason.startswith("empty file"):
        return UploadError(400, "the uploaded file is empty")
    if reason.startswith("not an image"):
        return UploadError(415, "not an image: please choose a photo (JPEG, PNG, WebP, ...)")
    # a format Pillow knows, but the file is damaged or truncated
    return UploadError(422, f"the image file is damaged or incomplete ({reason})")


@dataclass
class Engine:
    """Decode -> fit -> calibrated probabilities (+ Grad-CAM). Called from worker threads."""

    predictor: Any
    gradcam: Any = None
    max_pixels: int = 89_478_485
    gradcam_note: str = ""

    def info(self) -> dict[str, Any]:
        p = self.predictor
        return {
            "classes": [{"code": c, "label": LABELS.get(c, c)} for c in p.classes],
            "input": {"height": p.height, "width": p.width},
            "model": p.path.name,
            "temperature": p.temperature,
            "gradcam": self.gradcam is not None,
            "gradcam_note": self.gradcam_note,
            "disclaimer": DISCLAIMER,
            "version": __version__,
        }

    def warmup(self) -> None:
        """One untimed pass (graph tracing, allocations) so the first visitor does not wait."""
        p = self.predictor
        x = np.full((1, p.height, p.width, 3), 128.0, dtype=np.float32)
        p.predict_arrays(x)
        if self.gradcam is not None:
            try:
                self.gradcam.heatmap(x[0], 0)
            except Exception:
                log.exception("Grad-CAM disabled: it failed on a test image")
                self.gradcam, self.gradcam_note = None, "Grad-CAM is unavailable on this server."

    def analyse(self, data: bytes) -> dict[str, Any]:
        try:
            img, fmt = decode(data, self.max_pixels)
        except ImageRejected as exc:
            raise _rejection(str(exc)) from exc
        p = self.predictor
        x = p.prepare(img)[None]
        probs = p.predict_arrays(x)[0]
        order = np.argsort(-probs, kind="stable")[:TOP_K]
        preds = [{"code": p.classes[i], "label": LABELS.get(p.classes[i], p.classes[i]),
                  "probability": round(float(probs[i]), 6)} for i in order]
        cam: dict[str, Any] | None = None
        note = self.gradcam_note
        if self.gradcam is not None:
            try:
                from dermai.runtime.gradcam import overlay

                heat = self.gradcam.heatmap(x[0], int(order[0]))
                shown = fit(img, p.height * DISPLAY_SCALE, p.width * DISPLAY_SCALE)
                cam = {"code": p.classes[order[0]], "label": preds[0]["label"],
                       "image": _png_data_url(overlay(shown, heat, alpha=0.4))}
                note = ("Grad-CAM: where the model's evidence for its top answer lies. It is not "
                        "an explanation a clinician can rely on.")
            except Exception:  # the heatmap is an extra: never fail the prediction for it
                log.exception("Grad-CAM failed")
                note = "Grad-CAM failed for this image."
        log.info("analysed one %s image (%d bytes, %dx%d)", fmt, len(data), img.width,
                 img.height)
        return {"predictions": preds, "gradcam": cam, "gradcam_note": note,
                "image": {"width": img.width, "height": img.height, "format": fmt},
                "model": p.path.name, "temperature": p.temperature, "disclaimer": DISCLAIMER}


# --------------------------------------------------------------------------- app


def _page(max_upload_bytes: int) -> str:
    text = resources.files("dermai.web").joinpath("static/index.html").read_text("utf-8")
    return (text.replace("{{DISCLAIMER}}", html.escape(DISCLAIMER))
            .replace("{{MAX_BYTES}}", str(int(max_upload_bytes)))
            .replace("{{MAX_SIZE}}", html.escape(_mb(max_upload_bytes)))
            .replace("{{VERSION}}", html.escape(__version__)))


def create_app(engine: Engine, *, max_upload_bytes: int = 16 * 1024 * 1024, workers: int = 1,
               max_queue: int = 64) -> FastAPI:
    """The ASGI app. `workers` inferences run at once; `max_queue` more may wait."""
    if workers < 1 or max_queue < 0:
        raise ValueError("workers must be >= 1 and max_queue >= 0")
    app = FastAPI(title="DermAI demo", description=DISCLAIMER, version=__version__,
                  docs_url=None, redoc_url=None, openapi_url=None)
    state: dict[str, Any] = {"admitted": 0, "loop": None, "slots": None}

    def slots() -> asyncio.Semaphore:
        """The inference semaphore of the running event loop (one per loop, made on first use)."""
        loop = asyncio.get_running_loop()
        if state["loop"] is not loop:
            state["loop"], state["slots"] = loop, asyncio.Semaphore(workers)
        return state["slots"]

    limit = workers + max_queue
    page = _page(max_upload_bytes)
    static = resources.files("dermai.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/info")
    async def api_info() -> JSONResponse:
        body = engine.info() | {"max_upload_bytes": max_upload_bytes}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.post("/api/predict")
    async def api_predict(request: Request) -> JSONResponse:
        if state["admitted"] >= limit:
            return error_response(503, "the demo is busy: try again in a few seconds",
                                  {"Retry-After": "2"})
        state["admitted"] += 1
        try:
            data = await read_upload(request, max_upload_bytes)
            async with slots():
                result = await anyio.to_thread.run_sync(engine.analyse, data)
            del data
            return JSONResponse(result, headers={"Cache-Control": "no-store"})
        except UploadError as exc:
            return error_response(exc.status, exc.message)
        except Exception:
            log.exception("prediction failed")
            return error_response(500, "internal error while analysing the image")
        finally:
            state["admitted"] -= 1

    app.state.engine = engine
    app.state.admission = state
    return app
