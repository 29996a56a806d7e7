"""Upload parsing for the demo: one multipart image field, read into memory with a size cap
and a time limit.

Privacy: an upload is read into memory and nowhere else. The body is parsed with
python-multipart's streaming parser into a bytearray, because Starlette's own form parser spools
any file over 1 MiB to a temporary file on disk.
"""

from __future__ import annotations

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FIELD = "file"  # the multipart field that carries the image
SLACK = 64 * 1024  # multipart framing and small fields allowed on top of the file limit


class UploadError(Exception):
    """A refused request: HTTP status and a one-line message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


async def read_upload(request: Request, limit: int, deadline: float | None = None) -> bytes:
    """The bytes of the `file` field of a multipart/form-data request, never touching disk.

    The whole body must arrive within `deadline` seconds (None: no deadline), or UploadError
    408: a client that dribbles bytes cannot hold memory and a connection for ever.
    Raises starlette's ClientDisconnect when the client goes away mid-body.
    """
    try:
        with anyio.fail_after(deadline):
            return await _read_upload(request, limit)
    except TimeoutError as exc:
        raise UploadError(
            408, f"the upload took longer than {deadline:g} s: check the connection and try again"
        ) from exc


async def _read_upload(request: Request, limit: int) -> bytes:
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
    callbacks = {
        name: getattr(sink, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
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
