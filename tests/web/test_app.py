"""The demo web app's API: good and bad uploads, in-memory handling, EXIF, admission control."""

from __future__ import annotations

import asyncio
import io
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from deploy import CLASSES, lesion, with_temperature
from dermai import DISCLAIMER
from imaging import encode


@pytest.fixture(scope="module")
def models(tiny_lite0, tiny_float32, tmp_path_factory) -> dict[str, Path]:
    """The session's shared tiny Lite0 (tests/conftest.py); its float32 export re-tempered to
    1.3 in a folder of its own."""
    tmp = tmp_path_factory.mktemp("web")
    return {
        "keras": tiny_lite0,
        "float32": with_temperature(tiny_float32, tmp / "model_float32.tflite", 1.3),
    }


@pytest.fixture(scope="module")
def engine(models):
    from dermai.web.engine import build_engine

    return build_engine(models["float32"], models["keras"], threads=1)


def call(app: Any, method: str, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.request(method, url, **kw)

    return asyncio.run(go())


def upload(data: bytes, name: str = "photo.jpg", ctype: str = "image/jpeg") -> dict:
    return {"files": {"file": (name, data, ctype)}}


def app_for(engine, **kw):
    from dermai.web.app import create_app

    return create_app(engine, **kw)


def test_page_and_info_carry_the_disclaimer_and_security_headers(engine):
    app = app_for(engine)
    page = call(app, "GET", "/")
    assert page.status_code == 200
    assert "Not a medical diagnosis" in page.text and "NOT a medical diagnostic tool" in page.text
    assert 'accept="image/*"' in page.text and "capture=" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    info = call(app, "GET", "/api/info").json()
    assert [c["code"] for c in info["classes"]] == CLASSES
    assert info["disclaimer"] == DISCLAIMER and info["gradcam"] is True
    assert call(app, "GET", "/static/app.js").status_code == 200


def test_a_good_image_gets_three_calibrated_predictions_and_a_gradcam(engine):
    r = call(
        app_for(engine),
        "POST",
        "/api/predict",
        **upload(encode(lesion("mel", seed=1, height=120, width=160))),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    preds = body["predictions"]
    assert [p["code"] for p in preds] and len(preds) == 3
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-5
    assert body["disclaimer"] == DISCLAIMER and body["temperature"] == pytest.approx(1.3)
    assert body["gradcam"]["image"].startswith("data:image/png;base64,")
    assert body["gradcam"]["code"] == preds[0]["code"]
    assert r.headers["cache-control"] == "no-store"


def test_matches_the_predictor_directly(engine):
    img = lesion("nv", seed=2, height=60, width=80)
    r = call(app_for(engine), "POST", "/api/predict", **upload(encode(img, "PNG"), "a.png"))
    expected = engine.bundle.analyse(engine.bundle.prepare(img)[None]).probabilities[0]
    got = {p["code"]: p["probability"] for p in r.json()["predictions"]}
    for code, prob in got.items():
        assert prob == pytest.approx(float(expected[CLASSES.index(code)]), abs=1e-5)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"%PDF-1.4 definitely not a photo", 415, "not an image"),
        (b"", 400, "empty"),
        (encode(lesion("mel", seed=3))[:300], 422, "image"),  # a truncated JPEG
    ],
)
def test_bad_uploads_get_a_clear_json_error(engine, data, status, message):
    r = call(app_for(engine), "POST", "/api/predict", **upload(data))
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and r.json()["disclaimer"] == DISCLAIMER


def test_oversize_uploads_are_refused_with_413(engine):
    app = app_for(engine, max_upload_bytes=100_000)
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    data = encode(Image.fromarray(big), "PNG")
    assert len(data) > 100_000
    r = call(app, "POST", "/api/predict", **upload(data, "big.png", "image/png"))
    assert r.status_code == 413 and "too large" in r.json()["error"]

    async def chunked() -> Any:  # no Content-Length: the streamed byte count is checked
        boundary = b"xyz"
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(5):
            yield b"\0" * 40_000
        yield b"\r\n--" + boundary + b"--\r\n"

    r = call(
        app,
        "POST",
        "/api/predict",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 413


def test_malformed_or_missing_uploads_are_400_or_415(engine):
    app = app_for(engine)
    r = call(app, "POST", "/api/predict", content=b"raw", headers={"content-type": "image/jpeg"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = call(app, "POST", "/api/predict", files={"other": ("a.jpg", b"x", "image/jpeg")})
    assert r.status_code == 400 and "no image" in r.json()["error"]
    r = call(
        app,
        "POST",
        "/api/predict",
        content=b"--b\r\nContent-Disposition: form-data",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 400 and "malformed" in r.json()["error"]


def test_uploads_never_touch_disk(engine, monkeypatch):
    """Starlette spools files over 1 MiB to a temp file; this app must not, at any size."""

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    noise = np.random.default_rng(1).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert len(data) > 2 * 1024 * 1024
    r = call(app_for(engine), "POST", "/api/predict", **upload(data, "n.png", "image/png"))
    assert r.status_code == 200, r.text


def test_exif_orientation_is_applied(engine):
    img = lesion("bcc", seed=4, height=90, width=160)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    exif[0x010F] = "SecretCam"  # other EXIF is ignored and never echoed
    data = encode(img, "JPEG", exif=exif, quality=95)
    r = call(app_for(engine), "POST", "/api/predict", **upload(data))
    assert r.json()["image"] == {"width": 90, "height": 160, "format": "JPEG"}
    assert "SecretCam" not in r.text
    shown = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    expected = engine.bundle.analyse(engine.bundle.prepare(shown)[None]).probabilities[0]
    top = r.json()["predictions"][0]
    assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_without_a_keras_model_there_is_no_gradcam_but_predictions_work(models):
    from dermai.web.engine import build_engine

    eng = build_engine(models["float32"], None)
    r = call(app_for(eng), "POST", "/api/predict", **upload(encode(lesion("nv", seed=5))))
    assert r.status_code == 200 and r.json()["gradcam"] is None
    assert "--keras" in r.json()["gradcam_note"] and len(r.json()["predictions"]) == 3


class BlockingEngine:
    """Holds every analysis until released, to observe the admission queue."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def analyse(self, data: bytes) -> dict:
        assert self.release.wait(30)
        return {"predictions": [], "bytes": len(data)}


def test_beyond_workers_plus_queue_requests_get_503_and_the_rest_complete():
    from dermai.web.app import create_app

    eng = BlockingEngine()
    app = create_app(eng, workers=1, max_queue=1)  # type: ignore[arg-type]

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", timeout=30
        ) as c:

            def send() -> Any:
                return c.post("/api/predict", **upload(b"x"))

            first = [asyncio.create_task(send()) for _ in range(2)]
            for _ in range(200):
                if app.state.admission["admitted"] == 2:
                    break
                await asyncio.sleep(0.01)
            refused = await send()
            assert refused.headers["retry-after"] == "2"
            assert "busy" in refused.json()["error"]
            eng.release.set()
            done = await asyncio.gather(*first)
            return [refused.status_code] + [r.status_code for r in done]

    assert asyncio.run(scenario()) == [503, 200, 200]
    assert app.state.admission["admitted"] == 0


def test_the_page_names_the_model_its_data_classes_metrics_and_offers_examples(models, tmp_path):
    import json
    import shutil

    from dermai.web.engine import build_engine

    model = tmp_path / "model_float32.tflite"
    shutil.copy(models["float32"], model)
    (tmp_path / "model_card.json").write_text(
        json.dumps(
            {
                "data": {
                    "name": "synthetic sample (generated)",
                    "synthetic": True,
                    "image_kind": "synthetic dermoscopy-like lesion pictures",
                },
                "classes": CLASSES,
                "metrics": {
                    "set": "test",
                    "n": 31,
                    "accuracy": 0.9,
                    "balanced_accuracy": 0.8,
                    "accuracy_ci": [0.7, 0.95],
                },
            }
        )
    )
    app = app_for(build_engine(model, None))
    page = call(app, "GET", "/").text
    assert "Synthetic demo model" in page and "model_float32.tflite" in page
    assert "synthetic sample (generated)" in page and "balanced accuracy 0.800" in page
    assert "Melanoma (mel)" in page and "synthetic dermoscopy-like lesion pictures" in page
    assert "well-lit photo" not in page and "{{" not in page
    info = call(app, "GET", "/api/info").json()
    assert 3 <= len(info["examples"]) <= 5 and info["model_card"]["data"]["synthetic"] is True
    for ex in info["examples"]:
        r = call(app, "GET", ex["url"])
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"  # JPEG
        assert call(app, "POST", "/api/predict", **upload(r.content)).json()[
            "predictions"
        ]  # no guard here: answered


def test_when_the_guard_trips_there_are_no_probabilities_and_the_message_names_the_kind(
    models, tmp_path
):
    import json
    import shutil

    from dermai.core.ood import Guard
    from dermai.web.engine import build_engine

    model = tmp_path / "model_float32.tflite"
    shutil.copy(models["float32"], model)
    (tmp_path / "model_card.json").write_text(
        json.dumps(
            {"data": {"name": "HAM10000", "synthetic": False, "image_kind": "dermoscopic images"}}
        )
    )
    guard = Guard("energy", threshold=0.0, keep=0.95, space="logits")
    probe = build_engine(model, None)
    data = encode(lesion("mel", seed=7))
    x = probe.bundle.prepare(Image.open(io.BytesIO(data)).convert("RGB"))[None]
    score = float(guard.score(probe.bundle.logits_fn(x))[0])
    for threshold, inside in ((score + 1.0, False), (score - 1.0, True)):
        guard.threshold = threshold
        (tmp_path / "ood.json").write_text(json.dumps(guard.to_dict()))
        app = app_for(build_engine(model, None))
        body = call(app, "POST", "/api/predict", **upload(data)).json()
        assert body["ood"]["in_distribution"] is inside
        assert body["ood"]["score"] == pytest.approx(score, abs=1e-4)
        if inside:
            assert len(body["predictions"]) == 3
        else:
            assert body["predictions"] == [] and "probabilit" not in json.dumps(body)
            assert body["message"].startswith(
                "This does not look like the images this model was trained on (dermoscopic images)"
            )
            assert body["disclaimer"] == DISCLAIMER


def test_serve_applies_the_calibrations_tta_to_keras_but_a_tflite_never(models, tmp_path):
    import json
    import shutil

    from dermai.runtime import bundle as bundle_mod
    from dermai.runtime import inference
    from dermai.web.engine import build_engine

    for f in (models["keras"], models["keras"].with_name("train_params.json"), models["float32"]):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 1.1, "tta": "flips"}))
    engine = build_engine(tmp_path / models["keras"].name, None, threads=1)
    assert engine.bundle.tta == "flips" and engine.info()["tta"] == "flips"
    img = lesion("bcc", seed=4, height=60, width=80)
    r = call(app_for(engine), "POST", "/api/predict", **upload(encode(img, "PNG"), "a.png"))
    expected = engine.bundle.analyse(engine.bundle.prepare(img)[None]).probabilities[0]
    x = engine.bundle.prepare(img)[None]
    assert not np.allclose(expected, inference.softmax(engine.bundle.logits_fn(x), 1.1), atol=1e-5)
    for p in r.json()["predictions"]:
        assert p["probability"] == pytest.approx(
            float(expected[CLASSES.index(p["code"])]), abs=1e-5
        )
    # The exported model scores the image once, as on device, whatever the calibration says.
    assert bundle_mod.load(tmp_path / models["float32"].name).tta == "none"
