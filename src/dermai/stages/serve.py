"""Local demo web app: upload or take a photo, see the top-3 conditions with calibrated
probabilities and a Grad-CAM overlay. NOT a medical diagnosis.

Serves on 127.0.0.1 by default (this computer only); `--host 0.0.0.0` exposes it to your local
network, e.g. to try the camera upload from a phone. Photos are analysed in memory and never
written to disk. With a .tflite `--model`, pass `--keras` as well to get the Grad-CAM overlay.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from dermai import DISCLAIMER
from dermai import params as params_mod
from dermai.errors import DermaiError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml",
                   help="params file (index.max_pixels); defaults apply if it is missing")
    p.add_argument("--model", default=None,
                   help="model to predict with: .tflite (int8 or float32) or .keras (default: "
                        "the export stage's --int8-out in dvc.yaml, models/model_int8.tflite)")
    p.add_argument("--keras", default=None,
                   help=".keras model for Grad-CAM (default: --model when it is .keras, else "
                        "the train stage's --model in dvc.yaml when that file exists)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1,
                   help="LiteRT threads per inference (default 1: fastest here, see README)")
    p.add_argument("--max-upload-mb", type=float, default=16.0,
                   help="largest accepted photo in MiB (default 16)")
    p.add_argument("--queue", type=int, default=64,
                   help="requests that may wait for the model; more get 503 (default 64)")


def build_engine(model: str | Path, keras_path: str | Path | None, *,
                 threads: int | None = 1, max_pixels: int = params_mod.PIL_MAX_PIXELS) -> Any:
    """Predictor (+ Grad-CAM when a Keras model is available), ready to serve."""
    from dermai.runtime import inference
    from dermai.web.app import Engine

    model = Path(model)
    predictor = inference.load(model, num_threads=threads)
    if keras_path is None and model.suffix == ".keras":
        keras_path = model
    gradcam, note = None, ""
    if keras_path is None:
        note = "No Grad-CAM: start the server with --keras models/model.keras to see one."
    else:
        try:
            import keras

            from dermai.runtime.gradcam import GradCam

            km = keras.saving.load_model(Path(keras_path), compile=False)
            h, w = (int(d) for d in km.inputs[0].shape[1:3])
            if (h, w) != (predictor.height, predictor.width):
                raise DermaiError(f"Keras model input {h}x{w} differs from the served model's "
                                  f"{predictor.height}x{predictor.width}")
            gradcam = GradCam(km)
        except (ImportError, OSError, ValueError, DermaiError) as exc:
            log.warning("Grad-CAM disabled: %s", str(exc).splitlines()[0] if str(exc) else exc)
            note = "Grad-CAM is unavailable on this server."
    engine = Engine(predictor, gradcam=gradcam, max_pixels=max_pixels, gradcam_note=note)
    engine.warmup()
    return engine


def run(args: argparse.Namespace) -> None:
    import uvicorn

    from dermai.web.app import create_app

    prm = params_mod.load_or_defaults(args.params)
    if args.max_upload_mb <= 0 or args.queue < 0 or args.threads < 1:
        raise DermaiError("--max-upload-mb and --threads must be positive, --queue >= 0")
    from dermai.io.pipeline import pipeline_file, stage_option

    if args.model is None and args.keras is None:  # both from the pipeline: Grad-CAM if trained
        keras_path = stage_option("train", "--model")
        args.keras = keras_path if Path(keras_path).is_file() else None
    args.model = pipeline_file("export", "--int8-out", args.model)
    engine = build_engine(args.model, args.keras, threads=args.threads,
                          max_pixels=prm.index.max_pixels)
    app = create_app(engine, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     max_queue=args.queue)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone on that network can use this demo", args.host)
    log.info("%s", DISCLAIMER)
    log.info("open http://%s:%d/", "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host,
             args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
