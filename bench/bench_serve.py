"""Load check of the demo server on loopback: good uploads while slow uploads are held open.

Peer runs in one script: 50 concurrent good uploads to an idle server, then the same 50 while
60 slow clients dribble one body byte every 0.5 s. Goal: 100% success in both, and every slow
client gets 408 (or is dropped) within the body deadline. Bounded: everything has a timeout.

    python bench/bench_serve.py                      # a stub engine: measures the server only
    python bench/bench_serve.py --model models/model_float32.tflite   # with the real model
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np


class StubEngine:
    """Stands in for the model: 5 ms of 'inference' per upload."""

    model: dict[str, Any] = {}  # noqa: RUF012

    def analyse(self, data: bytes) -> dict[str, Any]:
        time.sleep(0.005)
        return {"predictions": [], "bytes": len(data)}

    def info(self) -> dict[str, Any]:
        return {}


def serve(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 60:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def slow_client(port: int, stop: threading.Event, out: list[tuple[str, float]]) -> None:
    t0 = time.monotonic()
    outcome = "open"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; "
                b'name="file"; filename="a.jpg"\r\n\r\n'
            )
            s.settimeout(0.5)
            while not stop.is_set() and time.monotonic() - t0 < 120:
                try:
                    s.sendall(b"\xff")
                    reply = s.recv(64)
                    outcome = reply.split(b"\r\n")[0].decode() if reply else "dropped"
                    break
                except TimeoutError:
                    continue
                except OSError:
                    outcome = "dropped"
                    break
    except OSError as exc:
        outcome = f"connect failed: {exc}"
    out.append((outcome, time.monotonic() - t0))


async def good_uploads(base: str, photos: list[bytes]) -> tuple[list[int], list[float], float]:
    async def one(c: httpx.AsyncClient, i: int, d: bytes) -> tuple[int, float]:
        t = time.monotonic()
        r = await c.post("/api/predict", files={"file": (f"p{i}.jpg", d, "image/jpeg")})
        return r.status_code, time.monotonic() - t

    t0 = time.monotonic()
    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=httpx.Limits(max_connections=len(photos))
    ) as c:
        res = await asyncio.wait_for(
            asyncio.gather(*[one(c, i, d) for i, d in enumerate(photos)]), 240
        )
    return [s for s, _ in res], [t for _, t in res], time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help=".tflite/.keras; default: a stub engine")
    ap.add_argument("--good", type=int, default=50)
    ap.add_argument("--slow", type=int, default=60)
    ap.add_argument("--body-timeout", type=float, default=10.0)
    args = ap.parse_args()

    from dermai.core.synth import lesion_image
    from dermai.web.app import create_app

    if args.model:
        from dermai.web.engine import build_engine

        engine: Any = build_engine(args.model, None, threads=1)
    else:
        engine = StubEngine()
    app = create_app(engine, workers=1, max_queue=64, body_timeout=args.body_timeout)
    import io

    from PIL import Image

    photos = []
    for i in range(args.good):
        buf = io.BytesIO()
        Image.fromarray(
            lesion_image(["nv", "mel", "bcc"][i % 3], np.random.default_rng(i), 150, 200)
        ).save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    server, thread, base = serve(app)
    port = int(base.rsplit(":", 1)[1])
    try:
        alone = asyncio.run(good_uploads(base, photos))
        stop, slow_out = threading.Event(), []
        slow = [
            threading.Thread(target=slow_client, args=(port, stop, slow_out), daemon=True)
            for _ in range(args.slow)
        ]
        for t in slow:
            t.start()
        time.sleep(1.0)
        reading = app.state.admission["reading"]
        loaded = asyncio.run(good_uploads(base, photos))
        for t in slow:
            t.join(args.body_timeout + 30)
        stop.set()
    finally:
        server.should_exit = True
        thread.join(30)

    def line(name: str, res: tuple[list[int], list[float], float]) -> str:
        codes, lat, wall = res
        ok = sum(c == 200 for c in codes)
        return (
            f"{name}: {ok}/{len(codes)} ok ({100 * ok / len(codes):.0f}%), wall {wall:.2f} s,"
            f" latency median {statistics.median(lat):.3f} s, max {max(lat):.3f} s"
        )

    print(
        f"engine: {'model ' + args.model if args.model else 'stub (5 ms)'}; body deadline "
        f"{args.body_timeout:g} s; workers 1, queue 64"
    )
    print(line(f"{args.good} good uploads, idle server", alone))
    print(
        line(
            f"{args.good} good uploads, {args.slow} slow uploads held open "
            f"({reading} reading when they started)",
            loaded,
        )
    )
    print(f"ratio wall(with slow) / wall(idle): {loaded[2] / alone[2]:.2f}")
    outcomes: dict[str, int] = {}
    for o, _ in slow_out:
        outcomes[o] = outcomes.get(o, 0) + 1
    times = [t for _, t in slow_out]
    print(
        f"slow uploads: {outcomes}; closed after {min(times):.1f}-{max(times):.1f} s "
        f"(deadline {args.body_timeout:g} s)"
    )
    good = all(c == 200 for c in alone[0] + loaded[0])
    slow_ok = all(o.startswith("HTTP/1.1 408") or o == "dropped" for o, _ in slow_out)
    return 0 if good and slow_ok and len(slow_out) == args.slow else 1


if __name__ == "__main__":
    sys.exit(main())
