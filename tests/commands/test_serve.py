"""`dermai serve`: loopback by default, and a live uvicorn server under 50 concurrent uploads."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy import lesion, live_server
from dermai.errors import DermaiError
from imaging import encode


@pytest.fixture(scope="module")
def models(tiny_lite0, tiny_float32) -> dict[str, Path]:
    """The session's shared tiny Lite0 and its float32 export (tests/conftest.py)."""
    return {"keras": tiny_lite0, "float32": tiny_float32}


def parse(*argv: str) -> argparse.Namespace:
    from dermai.commands import serve

    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    return p.parse_args(list(argv))


def test_run_binds_loopback_by_default(models, monkeypatch, tmp_path):
    import uvicorn

    from dermai.commands import serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    serve.run(parse("--model", str(models["float32"]), "--params", str(tmp_path / "none.yaml")))
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["app"].state.engine.gradcam is None  # a .tflite alone: no Grad-CAM


def test_bad_model_paths_are_one_line_errors(tmp_path):
    from dermai.web.engine import build_engine

    with pytest.raises(DermaiError, match="model not found"):
        build_engine(tmp_path / "missing.tflite", None)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(DermaiError, match="unsupported model"):
        build_engine(tmp_path / "m.onnx", None)


@pytest.mark.timeout(600)  # above the test's own 240 s wait, so that one reports first
def test_fifty_concurrent_uploads_to_a_live_server_all_succeed(models):
    from dermai.web.app import create_app
    from dermai.web.engine import build_engine

    engine = build_engine(models["float32"], models["keras"], threads=1)
    app = create_app(engine, workers=1, max_queue=64)
    photos = [
        encode(lesion(c, seed=i, height=120, width=160))
        for i, c in enumerate(["bcc", "mel", "nv"] * 17)
    ][:50]

    async def fire(base: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            jobs = [
                client.post("/api/predict", files={"file": (f"p{i}.jpg", d, "image/jpeg")})
                for i, d in enumerate(photos)
            ]
            return await asyncio.wait_for(asyncio.gather(*jobs), timeout=240)

    with live_server(app) as base:
        assert base.startswith("http://127.0.0.1:")
        responses = asyncio.run(fire(base))
    assert [r.status_code for r in responses] == [200] * 50
    assert all(len(r.json()["predictions"]) == 3 and r.json()["gradcam"] for r in responses)
    assert app.state.admission["admitted"] == 0
