"""The demo's engine: decode -> fit -> calibrated probabilities, the out-of-distribution guard,
Grad-CAM, and what the page says about the loaded model.

Everything it knows about the model comes from its bundle (`runtime.bundle`: the model and the
files the pipeline wrote beside it): `train_params.json` (classes, input, params),
`model_card.json` (training data, headline metrics; written by `dermai evaluate`) and `ood.json`
(the guard). A missing file makes the page say "unknown", never guess. The images go through the
bundle's `analyse`, as `dermai predict`'s do.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermai import DISCLAIMER, __version__
from dermai.core.hashing import ImageRejected, decode
from dermai.core.modelcard import dataset_of
from dermai.core.preprocess import fit
from dermai.core.synth import STYLES, lesion_image
from dermai.errors import DermaiError
from dermai.runtime import bundle as bundle_mod
from dermai.runtime.gradcam import GradCam, overlay

if TYPE_CHECKING:
    from dermai.runtime.bundle import Bundle

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
DISPLAY_SCALE = 2  # the Grad-CAM overlay is drawn on the model's crop at this scale
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


def describe_model(model_path: Path, classes: list[str]) -> dict[str, Any]:
    """What the page says about the model, from the files beside it (see module doc)."""
    card = bundle_mod.read_side_json(model_path, bundle_mod.MODEL_CARD_FILE) or {}
    train = bundle_mod.read_side_json(model_path, bundle_mod.TRAIN_PARAMS_FILE) or {}
    data = card.get("data") or (dataset_of(train["params"]) if "params" in train else None)
    return {
        "name": model_path.name,
        "data": data
        or {"name": "unknown", "image_kind": bundle_mod.UNKNOWN_KIND, "synthetic": False},
        "classes": [{"code": c, "label": LABELS.get(c, c)} for c in classes],
        "metrics": card.get("metrics"),
    }


def example_images(
    classes: list[str], size: tuple[int, int], n: int = N_EXAMPLES
) -> list[tuple[str, bytes]]:
    """Synthetic lesion pictures to try the demo with (core/synth; never real images)."""
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
    """Decode -> fit -> the bundle's analysis (+ Grad-CAM). Called from threads."""

    bundle: Bundle
    gradcam: GradCam | None = None
    max_pixels: int = 89_478_485
    gradcam_note: str = ""
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            self.model = describe_model(Path(self.bundle.path), list(self.bundle.classes))

    @property
    def image_kind(self) -> str:
        return str(self.model["data"].get("image_kind", bundle_mod.UNKNOWN_KIND))

    def info(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "classes": [{"code": c, "label": LABELS.get(c, c)} for c in b.classes],
            "input": {"height": b.height, "width": b.width},
            "model": b.path.name,
            "model_card": self.model,
            "ood_guard": None
            if b.guard is None
            else {"method": b.guard.method, "keep": b.guard.keep},
            "temperature": b.temperature,
            "tta": b.tta,
            "colour_constancy": b.colour_constancy,
            "gradcam": self.gradcam is not None,
            "gradcam_note": self.gradcam_note,
            # the optional fields the page offers ("unknown" by default), from the model's
            # recorded vocabularies (core.metadata)
            "metadata": None
            if b.metadata is None
            else {"fields": list(b.metadata.fields), "vocab": dict(b.metadata.vocab)},
            "disclaimer": DISCLAIMER,
            "version": __version__,
        }

    @property
    def need(self) -> int:
        """The smallest side a decoded image needs: the model input at display scale."""
        return max(self.bundle.height, self.bundle.width) * DISPLAY_SCALE

    def warmup(self) -> None:
        """One untimed pass (graph tracing, allocations) so the first visitor does not wait."""
        b = self.bundle
        x = np.full((1, b.height, b.width, 3), 128.0, dtype=np.float32)
        b.analyse(x)  # a metadata model: every field unknown
        if self.gradcam is not None:
            try:
                self.gradcam.heatmap(x[0], 0)
            except Exception:
                log.exception("Grad-CAM disabled: it failed on a test image")
                self.gradcam, self.gradcam_note = None, "Grad-CAM is unavailable on this server."

    def analyse(self, data: bytes, answers: dict[str, str] | None = None) -> dict[str, Any]:
        """One uploaded image (and, for a model with metadata, the user's `answers`: any
        subset of its fields, the rest unknown) -> the page's answer."""
        try:
            img, fmt = decode(data, self.max_pixels, draft=(self.need, self.need))
        except ImageRejected as exc:
            raise _rejection(str(exc)) from exc
        b = self.bundle
        x = b.prepare(img)[None]
        m, used = (None, None) if b.metadata is None else b.encode_answers(answers or {})
        a = b.analyse(x, None if m is None else m[None])
        base = {
            "image": {"width": img.width, "height": img.height, "format": fmt},
            "model": b.path.name,
            "temperature": b.temperature,
            "disclaimer": DISCLAIMER,
            **({"metadata": used} if used is not None else {}),
        }
        score = None if a.ood_scores is None else float(a.ood_scores[0])
        ood = {
            "in_distribution": bool(a.in_distribution[0]),
            "score": score,
            "threshold": None if b.guard is None else b.guard.threshold,
            "method": None if b.guard is None else b.guard.method,
        }
        if not ood["in_distribution"]:
            log.info(
                "out-of-distribution image refused (score %.3f < %.3f)", score, ood["threshold"]
            )
            return {
                **base,
                "predictions": [],
                "gradcam": None,
                "gradcam_note": "",
                "ood": ood,
                "message": bundle_mod.ood_message(self.image_kind),
            }
        ranked = bundle_mod.top(a.probabilities[0], b.classes)
        preds = [
            {"code": c, "label": LABELS.get(c, c), "probability": round(p, 6)} for c, p in ranked
        ]
        cam: dict[str, Any] | None = None
        note = self.gradcam_note
        if self.gradcam is not None:
            try:
                heat = self.gradcam.heatmap(x[0], b.classes.index(ranked[0][0]))
                shown = fit(img, b.height * DISPLAY_SCALE, b.width * DISPLAY_SCALE)
                cam = {
                    "code": ranked[0][0],
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
    """The model's bundle (+ Grad-CAM when a Keras model is available), ready to serve."""
    model = Path(model)
    b = bundle_mod.load(model, num_threads=threads, guard=False)
    if keras_path is None and model.suffix == ".keras":
        keras_path = model
    gradcam, note, km = None, "", None
    if keras_path is None:
        note = "No Grad-CAM: start the server with --keras models/model.keras to see one."
    else:
        try:
            same = Path(keras_path) == model and b.keras_model is not None
            km = b.keras_model if same else bundle_mod.load_keras(keras_path)
            h, w = (int(d) for d in km.inputs[0].shape[1:3])
            if (h, w) != (b.height, b.width):
                raise DermaiError(
                    f"Keras model input {h}x{w} differs from the served model's "
                    f"{b.height}x{b.width}"
                )
            gradcam = GradCam(km)
        except (ImportError, OSError, ValueError, DermaiError) as exc:
            log.warning("Grad-CAM disabled: %s", str(exc).splitlines()[0] if str(exc) else exc)
            note = "Grad-CAM is unavailable on this server."
            km = None
    guard, features_fn = bundle_mod.guard_of(model, km if km is not None else b.keras_model, b.lite)
    b = replace(b, guard=guard, features_fn=features_fn)
    if guard is None:
        log.warning(
            "no %s beside %s: the page cannot refuse non-skin images",
            bundle_mod.OOD_FILE,
            model.name,
        )
    engine = Engine(b, gradcam=gradcam, max_pixels=max_pixels, gradcam_note=note)
    engine.warmup()
    return engine
