"""The demo page in a real headless Chromium (Debian's), at a desktop and a phone viewport.

Uploads a photo, expects three predictions, the Grad-CAM overlay and the not-a-diagnosis notice;
uploads a non-image and expects the server's error on the page. Screenshots go to
reports/screenshots/ (override with DERMAI_SCREENSHOTS) for a person to look at.

The tiny untrained test model is served by default; DERMAI_E2E_MODEL (a .tflite or .keras) and
DERMAI_E2E_KERAS serve a real one instead, e.g. for README screenshots.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deploy import lesion, live_server

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # Chromium start-up and two viewports on a loaded machine
    # `server` reaches tiny_lite0/tiny_float32 by getfixturevalue, which the collection hook in
    # tests/conftest.py cannot see: the group it would give, so xdist builds them on one worker
    pytest.mark.xdist_group("tiny_lite0"),
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


@pytest.fixture(scope="module")
def server(request):
    from dermai.web.app import create_app
    from dermai.web.engine import build_engine

    model, keras_path = os.environ.get("DERMAI_E2E_MODEL"), os.environ.get("DERMAI_E2E_KERAS")
    if model is None:  # the session's shared tiny Lite0 and its float32 export (conftest.py)
        keras_path = str(request.getfixturevalue("tiny_lite0"))
        model = str(request.getfixturevalue("tiny_float32"))
    app = create_app(build_engine(model, keras_path, threads=1))
    with live_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("uploads")
    photo = tmp / "spot.jpg"
    lesion("mel", seed=7, height=600, width=800).save(photo, "JPEG", quality=92)
    text = tmp / "notes.txt"
    text.write_text("this is not a photo\n")
    return {"photo": photo, "text": text}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield p, b
        b.close()


def shots() -> Path:
    out = Path(os.environ.get("DERMAI_SCREENSHOTS", ROOT / "reports" / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_upload_shows_predictions_notice_and_errors(browser, server, files, viewport):
    expect = sync_api.expect
    p, b = browser
    if viewport == "phone":
        ctx = b.new_context(**p.devices["Pixel 7"])
    else:
        ctx = b.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(server) or r.url.startswith(("data:", "blob:"))
            else problems.append(f"off-site: {r.url}")
        ),
    )
    try:
        page.goto(server + "/")
        expect(page.locator("#disclaimer")).to_contain_text("Not a medical diagnosis")
        expect(page.locator("#disclaimer")).to_contain_text("NOT a medical diagnostic tool")
        assert page.get_attribute("#file-take", "capture") == "environment"
        assert page.get_attribute("#file-take", "accept") == "image/*"

        page.set_input_files("#file-choose", str(files["photo"]))
        items = page.locator("#predictions li.prediction")
        expect(items).to_have_count(3, timeout=60_000)
        for i in range(3):
            expect(items.nth(i).locator(".value")).to_have_text(re.compile(r"^[<>]?\d+(\.\d)?%$"))
        expect(page.locator("#cam")).to_be_visible()
        expect(page.locator("#result .notice")).to_contain_text("Not a medical diagnosis")
        expect(page.locator("#error")).to_be_hidden()
        page.screenshot(path=str(shots() / f"{viewport}.png"), full_page=True)

        page.set_input_files("#file-choose", str(files["text"]))
        expect(page.locator("#error")).to_be_visible(timeout=30_000)
        expect(page.locator("#error")).to_contain_text("not an image", ignore_case=True)
        expect(page.locator("#result")).to_be_hidden()  # no stale answer next to the error
        page.screenshot(path=str(shots() / f"{viewport}-error.png"), full_page=True)
        # a 415 answer shows up as a console "Failed to load resource" line, which is expected
        problems = [m for m in problems if "status of 415" not in m]
        assert problems == []
    finally:
        ctx.close()
