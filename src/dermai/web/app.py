"""The demo web app's routes: the page, model info, example images and /api/predict.

Privacy: an upload is read into memory and nowhere else (`web.upload`); nothing is logged about
an image beyond its byte count and size. EXIF is ignored except orientation.

Load: a request's body is read first, within `body_timeout` seconds (408 after), by at most
`max_readers` requests at once (503 beyond); once half of them are busy, one client address may
hold at most `max_client_readers` (503 beyond), so one client's slow bodies cannot take every
reader while a burst of good uploads from one address still gets through. Only then does it take
an admission slot: inference
runs in a worker thread, at most `workers` at a time, and up to `max_queue` more wait; beyond
that a request gets 503 and `Retry-After`. So slow or idle uploads cannot starve good ones, and
memory stays bounded by (max_readers + workers + max_queue) x the upload limit.

Host/Origin: only requests whose Host is in `allowed_hosts` (localhost names by default) are
served (others: 421), and a POST whose Origin is not this server gets 403. That closes DNS
rebinding and cross-site form posts against a server on your machine.
"""

from __future__ import annotations

import asyncio
import html
import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from dermai import DISCLAIMER, __version__
from dermai.web.engine import UploadRejected, example_images
from dermai.web.upload import UploadError, _mb, read_upload

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
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


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": message, "disclaimer": DISCLAIMER},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def host_name(value: str) -> str:
    """'Host' header or netloc -> lower-case host name without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _metric(m: dict[str, Any] | None) -> str:
    if not m:
        return "not recorded (run `dermai evaluate`)"
    parts = []
    for key, name in (
        ("balanced_accuracy", "balanced accuracy"),
        ("accuracy", "accuracy"),
        ("macro_auc", "macro AUC"),
    ):
        if m.get(key) is not None:
            ci = m.get(key + "_ci")
            parts.append(f"{name} {m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
    return f"{', '.join(parts)} on {m.get('n', '?')} {m.get('set', 'test')} images"


def _page(engine: Any, max_upload_bytes: int, n_examples: int) -> str:
    text = resources.files("dermai.web").joinpath("static/index.html").read_text("utf-8")
    card = getattr(engine, "model", None) or {}
    data = card.get("data", {})
    synthetic = bool(data.get("synthetic"))
    kind = str(data.get("image_kind", "images like its training data"))
    name = str(card.get("name", "unknown"))
    headline = (
        "Synthetic demo model: trained on generated pictures, it knows nothing about real skin."
        if synthetic
        else f"Model: {name}"
    )
    examples = "".join(
        f'<button type="button" class="example" data-src="/examples/{i}.jpg">'
        f'<img src="/examples/{i}.jpg" alt="Example {i + 1}" width="80" height="60"></button>'
        for i in range(n_examples)
    )
    fill = {
        "{{DISCLAIMER}}": html.escape(DISCLAIMER),
        "{{MAX_BYTES}}": str(int(max_upload_bytes)),
        "{{MAX_SIZE}}": html.escape(_mb(max_upload_bytes)),
        "{{VERSION}}": html.escape(__version__),
        "{{MODEL_HEADLINE}}": html.escape(headline),
        "{{MODEL_NAME}}": html.escape(name),
        "{{MODEL_DATA}}": html.escape(str(data.get("name", "unknown"))),
        "{{IMAGE_KIND}}": html.escape(kind),
        "{{CLASSES}}": html.escape(
            ", ".join(
                f"{c['label']} ({c['code']})" if c["label"] != c["code"] else c["code"]
                for c in card.get("classes", [])
            )
        ),
        "{{METRICS}}": html.escape(_metric(card.get("metrics"))),
        "{{EXAMPLES}}": examples,
        "{{SYNTHETIC}}": "true" if synthetic else "false",
        "{{METADATA_FORM}}": metadata_form(engine),
    }
    for k, v in fill.items():
        text = text.replace(k, v)
    return text


def create_app(
    engine: Any,
    *,
    max_upload_bytes: int = 16 * 1024 * 1024,
    workers: int = 1,
    max_queue: int = 64,
    body_timeout: float = 30.0,
    max_readers: int = 256,
    max_client_readers: int = 16,
    allowed_hosts: tuple[str, ...] | list[str] = LOCAL_HOSTS,
) -> FastAPI:
    """The ASGI app. `workers` inferences run at once; `max_queue` more may wait.

    `allowed_hosts`: host names (no port) this server answers to; "*" allows any.
    """
    if workers < 1 or max_queue < 0 or min(max_readers, max_client_readers) < 1:
        raise ValueError("workers, max_readers, max_client_readers >= 1, max_queue >= 0")
    if body_timeout <= 0:
        raise ValueError("body_timeout > 0")
    app = FastAPI(
        title="DermAI demo",
        description=DISCLAIMER,
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    state: dict[str, Any] = {
        "admitted": 0,
        "reading": 0,
        "by_client": {},  # client address -> bodies being read
        "loop": None,
        "slots": None,
    }
    hosts = {host_name(h) for h in allowed_hosts}
    any_host = "*" in hosts

    def slots() -> asyncio.Semaphore:
        """The inference semaphore of the running event loop (one per loop, made on first use)."""
        loop = asyncio.get_running_loop()
        if state["loop"] is not loop:
            state["loop"], state["slots"] = loop, asyncio.Semaphore(workers)
        return state["slots"]

    limit = workers + max_queue
    info = getattr(engine, "model", None) or {}
    try:
        classes = [c["code"] for c in info.get("classes", [])]
        # half the input size: the scale `dermai sample` draws at (75x100 for 150x200)
        size = (max(32, engine.bundle.height // 2), max(32, engine.bundle.width // 2))
        examples = example_images(classes, size)
    except AttributeError:  # an engine without a bundle (tests): no examples
        examples = []
    page = _page(engine, max_upload_bytes, len(examples))
    static = resources.files("dermai.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def guard_and_headers(request: Request, call_next: Any) -> Any:
        host = host_name(request.headers.get("host", ""))
        if not any_host and host not in hosts:
            log.info(
                "refused a request for host %r (allowed: %s)", host[:100], ", ".join(sorted(hosts))
            )
            response: Any = error_response(421, "this server does not answer to that host name")
        elif request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
            log.info(
                "refused a cross-origin %s from %r",
                request.method,
                request.headers.get("origin", "")[:100],
            )
            response = error_response(403, "cross-origin requests are not accepted")
        else:
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
        body = engine.info() | {
            "max_upload_bytes": max_upload_bytes,
            "examples": [
                {"url": f"/examples/{i}.jpg", "title": t} for i, (t, _) in enumerate(examples)
            ],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/examples/{n}.jpg")
    async def example(n: int) -> Response:
        if not 0 <= n < len(examples):
            return error_response(404, "no such example")
        return Response(
            examples[n][1],
            media_type="image/jpeg",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @app.post("/api/predict")
    async def api_predict(request: Request) -> JSONResponse:
        client = request.client.host if request.client else ""
        by_client = state["by_client"]
        crowded = state["reading"] >= max_readers // 2  # then no client takes more than its share
        if state["reading"] >= max_readers or (
            crowded and by_client.get(client, 0) >= max_client_readers
        ):
            return error_response(
                503, "the demo is busy: try again in a few seconds", {"Retry-After": "2"}
            )
        state["reading"] += 1
        by_client[client] = by_client.get(client, 0) + 1
        try:
            data = await read_upload(request, max_upload_bytes, body_timeout)
        except UploadError as exc:
            return error_response(exc.status, exc.message)
        except ClientDisconnect:
            log.info("client disconnected during the upload")
            return error_response(400, "the upload was interrupted")
        finally:
            state["reading"] -= 1
            by_client[client] -= 1
            if not by_client[client]:
                del by_client[client]
        if state["admitted"] >= limit:
            return error_response(
                503, "the demo is busy: try again in a few seconds", {"Retry-After": "2"}
            )
        state["admitted"] += 1
        try:
            async with slots():
                answers = metadata_answers(engine, request)
                args = (data,) if answers is None else (data, answers)
                result = await anyio.to_thread.run_sync(engine.analyse, *args)
            del data
            return JSONResponse(result, headers={"Cache-Control": "no-store"})
        except (UploadError, UploadRejected) as exc:
            return error_response(exc.status, exc.message)
        except Exception:
            log.exception("prediction failed")
            return error_response(500, "internal error while analysing the image")
        finally:
            state["admitted"] -= 1

    app.state.engine = engine
    app.state.admission = state
    return app


def metadata_answers(engine: Any, request: Request) -> dict[str, str] | None:
    """The patient metadata sent with a photo as query parameters (`?age=45&sex=female`): only
    the fields the model takes, each at most 64 characters; None for a model without them."""
    info = getattr(getattr(engine, "bundle", None), "metadata", None)
    if info is None:
        return None
    return {f: request.query_params[f][:64] for f in info.fields if f in request.query_params}


def metadata_form(engine: Any) -> str:
    """The page's optional metadata fields, "unknown" by default, from the model's recorded
    vocabularies; empty for a model without metadata."""
    enc = getattr(getattr(engine, "bundle", None), "metadata", None)
    if enc is None:
        return ""
    rows = []
    for f in enc.fields:
        label = html.escape(f.replace("_", " "))
        name = html.escape(f, quote=True)
        if f == "age":
            control = (
                f'<input id="meta-{name}" data-field="{name}" type="number" min="0" max="130" '
                'step="1" inputmode="numeric" placeholder="unknown">'
            )
        else:
            options = "".join(
                f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>'
                for v in enc.vocab[f]
            )
            control = (
                f'<select id="meta-{name}" data-field="{name}">'
                f'<option value="" selected>unknown</option>{options}</select>'
            )
        rows.append(f'<label for="meta-{name}">{label}</label>{control}')
    return (
        '<fieldset id="metadata" class="metadata"><legend>About the patient (optional; '
        "leave unknown if unsure)</legend>" + "".join(rows) + "</fieldset>"
    )


def _same_origin(request: Request) -> bool:
    """A state-changing request must come from this page: its Origin (or, without one, its
    Sec-Fetch-Site) must match the Host it was sent to. Non-browser clients send neither."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
