"""Local demo web app: upload or take a photo, see the top-3 conditions with calibrated
probabilities and a Grad-CAM overlay. NOT a medical diagnosis.

Serves on 127.0.0.1 by default (this computer only); `--host 0.0.0.0` exposes it to your local
network, e.g. to try the camera upload from a phone; the server then also answers to this
machine's own names and addresses, and `--allowed-hosts` adds others. Photos are analysed in
memory and never written to disk. With a .tflite `--model`, pass `--keras` as well to get the
Grad-CAM overlay (and the out-of-distribution guard, when `ood.json` scores penultimate
features; a trunk guard reads the .tflite's own trunk output).
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.errors import DermaiError
from dermai.io.pipeline import pipeline_file, stage_option

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file (index.max_pixels); defaults apply if it is missing",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model to predict with: .tflite (int8 or float32) or .keras (default: "
        "the export stage's --int8-out in dvc.yaml, models/model_int8.tflite)",
    )
    p.add_argument(
        "--keras",
        default=None,
        help=".keras model for Grad-CAM (default: --model when it is .keras, else "
        "the train stage's --model in dvc.yaml when that file exists)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="LiteRT threads per inference (default 1: fastest here, see README)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=16.0,
        help="largest accepted photo in MiB (default 16)",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=64,
        help="requests that may wait for the model; more get 503 (default 64)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds an upload may take to arrive; slower ones get 408 (default 30)",
    )
    p.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated extra host names/addresses the server answers to "
        "(localhost names always; '*' = any, not recommended)",
    )


def allowed_hosts(bind: str, extra: str) -> list[str]:
    """Localhost names, the bind address, this machine's names when bound to all interfaces,
    and `extra`: the Host headers a browser can legitimately send here."""
    from dermai.web.app import LOCAL_HOSTS

    hosts = [*LOCAL_HOSTS, bind]
    if bind in ("0.0.0.0", "::", ""):
        try:
            name, aliases, addrs = socket.gethostbyname_ex(socket.gethostname())
            hosts += [name, *aliases, *addrs]
        except OSError:
            pass
    hosts += [h.strip() for h in extra.split(",") if h.strip()]
    return sorted({h for h in hosts if h not in ("0.0.0.0", "::", "")})


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from dermai.web.app import create_app
    from dermai.web.engine import build_engine

    prm = params_mod.load_or_defaults(args.params)
    if args.max_upload_mb <= 0 or args.queue < 0 or args.threads < 1 or args.body_timeout <= 0:
        raise DermaiError(
            "--max-upload-mb, --threads and --body-timeout must be positive, --queue >= 0"
        )
    if args.model is None and args.keras is None:  # both from the pipeline: Grad-CAM if trained
        keras_path = stage_option("train", "--model")
        args.keras = keras_path if Path(keras_path).is_file() else None
    args.model = pipeline_file("export", "--int8-out", args.model)
    engine = build_engine(
        args.model, args.keras, threads=args.threads, max_pixels=prm.index.max_pixels
    )
    hosts = allowed_hosts(args.host, args.allowed_hosts)
    app = create_app(
        engine,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_queue=args.queue,
        body_timeout=args.body_timeout,
        allowed_hosts=hosts,
    )
    log.info("answering to host names: %s", ", ".join(hosts))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone on that network can use this demo", args.host)
    log.info("%s", DISCLAIMER)
    log.info(
        "open http://%s:%d/",
        "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host,
        args.port,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
