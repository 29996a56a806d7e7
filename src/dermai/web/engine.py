"""The demo's engine: decode -> fit -> calibrated probabilities, the out-of-distribution guard,
Grad-CAM, and what the page says about the loaded model.

Everything it knows about the model comes from the files the pipeline wrote beside it:
`train_params.json` (classes, input, params), `model_card.json` (training data, headline
metrics; written by `dermai evaluate`) and `ood.json` (the guard). A missing file makes the page
say "unknown", never guess.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermai import DISCLAIMER, __version__
from dermai.core.hashing import ImageRejected, decode
from dermai.core.preprocess import fit
from dermai.errors import DermaiError
from dermai.models import archive

if TYPE_CHECKING:
    from dermai.core.ood import Guard
    from dermai.runtime.gradcam import GradCam
    from dermai.runtime.inference import LogitsFn, Predictor

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
TOP_K = 3
DISPLAY_SCALE = 2  # the Grad-CAM overlay is drawn on the model's crop at this scale
CARD_FILE = "model_card.json"
TRAIN_PARAMS_FILE = "train_params.json"
N_EXAMPLES = 4


class UploadRejected(Exception):
    """An image the engine refuses: HTTP status and a one-line message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _png_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rejection(reason: str) -> UploadRejected:
    """core.hashing's reject reason -> HTTP status and a message for a person."""
    if reason.startswith("image too large"):
        return UploadRejected(413, reason)
    if reason.startswith("empty file"):
        return UploadRejected(400, "the uploaded file is empty")
    if reason.startswith("not an image"):
        return UploadRejected(415, "not an image: please choose a photo (JPEG, PNG, WebP, ...)")
    # a format Pillow knows, but the file is damaged or truncated
    return UploadRejected(422, f"the image file is damaged or incomplete ({reason})")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8")) if path.is_file() else None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def describe_model(model_path: Path, classes: list[str]) -> dict[str, Any]:
    """What the page says about the model, from the files beside it (see module doc)."""
    from dermai.core.modelcard import dataset_of

    card = read_json(model_path.with_name(CARD_FILE)) or {}
    train = read_json(model_path.with_name(TRAIN_PARAMS_FILE)) or {}
    data = card.get("data") or (dataset_of(train["params"]) if "params" in train else None)
    return {
        "name": model_path.name,
        "data": data
        or {"name": "unknown", "image_kind": "images like its training data", "synthetic": False},
        "classes": [{"code": c, "label": LABELS.get(c, c)} for c in classes],
        "metrics": card.get("metrics"),
    }


def example_images(
    classes: list[str], size: tuple[int, int], n: int = N_EXAMPLES
) -> list[tuple[str, bytes]]:
    """Synthetic lesion pictures to try the demo with (core/synth; never real images)."""
    from dermai.core.synth import STYLES, lesion_image

    h, w = size
    kinds = [c for c in classes if c in STYLES] or sorted(STYLES)
    out = []
    for i in range(n):
        cond = kinds[i % len(kinds)]
        arr = lesion_image(cond, np.random.default_rng(1000 + i), h, w)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append((f"synthetic {cond}", buf.getvalue()))
    return out


@dataclass
class Engine:
    """Decode -> fit -> guard -> calibrated probabilities (+ Grad-CAM). Called from threads."""

    predictor: Predictor
    gradcam: GradCam | None = None
    max_pixels: int = 89_478_485
    gradcam_note: str = ""
    guard: Guard | None = None
    features_fn: LogitsFn | None = None  # x -> penultimate features, when the guard needs them
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            self.model = describe_model(Path(self.predictor.path), list(self.predictor.classes))

    @property
    def image_kind(self) -> str:
        return str(self.model["data"].get("image_kind", "images like its training data"))

    def ood_message(self) -> str:
        from dermai.runtime.inference import ood_message

        return ood_message(self.image_kind)

    def info(self) -> dict[str, Any]:
        p = self.predictor
        return {
            "classes": [{"code": c, "label": LABELS.get(c, c)} for c in p.classes],
            "input": {"height": p.height, "width": p.width},
            "model": p.path.name,
            "model_card": self.model,
            "ood_guard": None
            if self.guard is None
            else {"method": self.guard.method, "keep": self.guard.keep},
            "temperature": p.temperature,
            "tta": p.tta,
            "colour_constancy": p.colour_constancy,
            "gradcam": self.gradcam is not None,
            "gradcam_note": self.gradcam_note,
            "disclaimer": DISCLAIMER,
            "version": __version__,
        }

    @property
    def need(self) -> int:
        """The smallest side a decoded image needs: the model input at display scale."""
        return max(self.predictor.height, self.predictor.width) * DISPLAY_SCALE

    def warmup(self) -> None:
        """One untimed pass (graph tracing, allocations) so the first visitor does not wait."""
        p = self.predictor
        x = np.full((1, p.height, p.width, 3), 128.0, dtype=np.float32)
        p.predict_arrays(x)
        if self.features_fn is not None:
            self.features_fn(x)
        if self.gradcam is not None:
            try:
                self.gradcam.heatmap(x[0], 0)
            except Exception:
                log.exception("Grad-CAM disabled: it failed on a test image")
                self.gradcam, self.gradcam_note = None, "Grad-CAM is unavailable on this server."

    def check(self, x: np.ndarray, logits: np.ndarray) -> tuple[bool, float | None]:
        """(in distribution?, score) under the saved guard; (True, None) without one."""
        if self.guard is None:
            return True, None
        feats = None
        if self.guard.space == "features":
            if self.features_fn is None:
                raise DermaiError(
                    "the OOD guard scores image features: the engine needs "
                    "features_fn (runtime.inference.load_guard gives both)"
                )
            feats = self.features_fn(x)
        score = float(self.guard.score(logits, feats)[0])
        return score >= self.guard.threshold, score

    def analyse(self, data: bytes) -> dict[str, Any]:
        try:
            img, fmt = decode(data, self.max_pixels, draft=(self.need, self.need))
        except ImageRejected as exc:
            raise _rejection(str(exc)) from exc
        p = self.predictor
        x = p.prepare(img)[None]
        logits, scored = p.outputs(x)  # as given (the guard's), with TTA (the answer's)
        base = {
            "image": {"width": img.width, "height": img.height, "format": fmt},
            "model": p.path.name,
            "temperature": p.temperature,
            "disclaimer": DISCLAIMER,
        }
        inside, score = self.check(x, logits)
        ood = {
            "in_distribution": inside,
            "score": score,
            "threshold": None if self.guard is None else self.guard.threshold,
            "method": None if self.guard is None else self.guard.method,
        }
        if not inside:
            log.info(
                "out-of-distribution image refused (score %.3f < %.3f)", score, ood["threshold"]
            )
            return {
                **base,
                "predictions": [],
                "gradcam": None,
                "gradcam_note": "",
                "ood": ood,
                "message": self.ood_message(),
            }
        from dermai.runtime.inference import softmax

        probs = softmax(scored, p.temperature)[0]
        order = np.argsort(-probs, kind="stable")[:TOP_K]
        preds = [
            {
                "code": p.classes[i],
                "label": LABELS.get(p.classes[i], p.classes[i]),
                "probability": round(float(probs[i]), 6),
            }
            for i in order
        ]
        cam: dict[str, Any] | None = None
        note = self.gradcam_note
        if self.gradcam is not None:
            try:
                from dermai.runtime.gradcam import overlay

                heat = self.gradcam.heatmap(x[0], int(order[0]))
                shown = fit(img, p.height * DISPLAY_SCALE, p.width * DISPLAY_SCALE)
                cam = {
                    "code": p.classes[order[0]],
                    "label": preds[0]["label"],
                    "image": _png_data_url(overlay(shown, heat, alpha=0.4)),
                }
                note = (
                    "Grad-CAM: where the model's evidence for its top answer lies. It is not "
                    "an explanation a clinician can rely on."
                )
            except Exception:  # the heatmap is an extra: never fail the prediction for it
                log.exception("Grad-CAM failed")
                note = "Grad-CAM failed for this image."
        log.info("analysed one %s image (%d bytes, %dx%d)", fmt, len(data), img.width, img.height)
        return {**base, "predictions": preds, "gradcam": cam, "gradcam_note": note, "ood": ood}


def build_engine(
    model: str | Path,
    keras_path: str | Path | None,
    *,
    threads: int | None = 1,
    max_pixels: int = 89_478_485,
) -> Engine:
    """Predictor (+ OOD guard, + Grad-CAM when a Keras model is available), ready to serve."""
    from dermai.runtime import inference

    model = Path(model)
    predictor = inference.load(model, num_threads=threads)
    if keras_path is None and model.suffix == ".keras":
        keras_path = model
    gradcam, note, km = None, "", None
    if keras_path is None:
        note = "No Grad-CAM: start the server with --keras models/model.keras to see one."
    else:
        try:
            from dermai.runtime.gradcam import GradCam

            km = archive.load_keras(Path(keras_path))
            h, w = (int(d) for d in km.inputs[0].shape[1:3])
            if (h, w) != (predictor.height, predictor.width):
                raise DermaiError(
                    f"Keras model input {h}x{w} differs from the served model's "
                    f"{predictor.height}x{predictor.width}"
                )
            gradcam = GradCam(km)
        except (ImportError, OSError, ValueError, DermaiError) as exc:
            log.warning("Grad-CAM disabled: %s", str(exc).splitlines()[0] if str(exc) else exc)
            note = "Grad-CAM is unavailable on this server."
            km = None
    guard, features_fn = inference.load_guard(model, km)
    if guard is None:
        log.warning(
            "no %s beside %s: the page cannot refuse non-skin images",
            inference.OOD_FILE,
            model.name,
        )
    engine = Engine(
        predictor,
        gradcam=gradcam,
        max_pixels=max_pixels,
        gradcam_note=note,
        guard=guard,
        features_fn=features_fn,
    )
    engine.warmup()
    return engine
