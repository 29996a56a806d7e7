"""The static on-device web app (`dermai export-web`) in a real headless Chromium.

Parity: 100 synthetic sample-like images go through LiteRT.js in the browser and through Python
LiteRT (`TfliteModel`, ai-edge-litert) on the same .tflite; top-1 must agree on >= 99% and the
probabilities within PROB_TOL. Preprocessing parity: the page's JS `fit` must give exactly the
pixels of `core.preprocess.fit` (Pillow) on odd-sized images, and its Shades-of-Grey colour
constancy those of `core.preprocess.prepare` within 1 grey level (measured: equal). Offline:
load once, cut the network (offline emulation and the server stopped), reload, predict again.
Prints the int8 inference time per image and the first prediction after load; screenshots go to
reports/screenshots/ondevice-*.

A tiny stand-in int8 model (tests/tinymodel.py, converted in seconds) is exported by default;
DERMAI_ONDEVICE_MODEL=models/model_int8.tflite runs the same checks on the real exported model
(the numbers in the README come from that).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import tinymodel
from deploy import lesion, tiny_tflite

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
NPM = ROOT / "web-ondevice" / "node_modules"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
N_PARITY = 100
# int8 models: the browser runs the same int8 kernels (XNNPack in WASM) as Python LiteRT, so the
# measured difference is 0 or one output quantum; the bound allows a few quanta of the logits.
PROB_TOL = {"float32": 1e-3, "int8": 2e-2}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # Chromium start-up, model load and viewports on a loaded machine
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(
        not (NPM / "@litertjs" / "core").is_dir(),
        reason="needs LiteRT.js from npm: run `make web-deps`",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".webmanifest": "application/manifest+json",
    }

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    env = os.environ.get("DERMAI_ONDEVICE_MODEL")
    if env:
        return Path(env)
    tmp = tmp_path_factory.mktemp("ondevice-model")
    classes = ["bcc", "mel", "nv"]
    keras_path = tinymodel.save(tinymodel.build(classes), tmp, classes)
    rep = np.stack(
        [
            np.asarray(lesion(c, seed=i, height=tinymodel.H, width=tinymodel.W), dtype=np.float32)
            for i, c in enumerate(classes * 6)
        ]
    )
    return tiny_tflite(keras_path, tmp, ("int8",), temperature=1.3, representative=rep)["int8"]


@pytest.fixture(scope="module")
def site(model_path, tmp_path_factory) -> Path:
    from dermai.commands.export_web import WASM, build

    out = tmp_path_factory.mktemp("site")
    wasm = os.environ.get("DERMAI_ONDEVICE_WASM", WASM)  # e.g. litert_wasm_internal (relaxed SIMD)
    for rel, data in build(
        model_path.read_bytes(), NPM, "synthetic sample images", model_path.name, wasm
    ).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


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


def watch(page, problems: list[str], base: str) -> None:
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # the WASM runtime writes its INFO/WARNING log lines to stderr, i.e. console.error
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith(("INFO: ", "WARNING: "))
            else None
        ),
    )
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(base) or r.url.startswith(("data:", "blob:"))
            else problems.append(f"off-site: {r.url}")
        ),
    )


def wait_ready(page) -> None:
    sync_api.expect(page.locator("#status")).to_have_attribute("data-ready", "1", timeout=60_000)


@contextlib.contextmanager
def ready_page(browser, site: Path) -> Iterator:
    """The site served locally and opened in a fresh browser context, model loaded."""
    _, b = browser
    with static_server(site) as (base, _):
        ctx = b.new_context()
        page = ctx.new_page()
        try:
            page.goto(base + "/")
            wait_ready(page)
            yield page
        finally:
            ctx.close()


def b64(img) -> str:
    """An image's RGB bytes for `page.evaluate` (JSON carries no binary)."""
    return base64.b64encode(np.asarray(img).tobytes()).decode()


def rgb(data: str, height: int, width: int) -> np.ndarray:
    """The page's base64 RGB bytes back as an H x W x 3 array."""
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 3)


def sample_images(n: int, height: int, width: int) -> np.ndarray:
    from dermai.core.synth import STYLES, lesion_image

    names = sorted(STYLES)
    rng = np.random.default_rng(2026)
    return np.stack([lesion_image(names[i % len(names)], rng, height, width) for i in range(n)])


def test_browser_matches_python_litert(browser, site, model_path):
    from dermai.runtime.inference import softmax
    from dermai.runtime.tflite import TfliteModel

    ref = TfliteModel(model_path, num_threads=1)
    kind = "int8" if np.dtype(ref.input_dtype).kind in "iu" else "float32"
    x = sample_images(N_PARITY, ref.height, ref.width)
    want = softmax(ref(x.astype(np.float32)), ref.temperature)

    _, b = browser
    with static_server(site) as (base, _):
        ctx = b.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        problems: list[str] = []
        watch(page, problems, base)
        try:
            t0 = time.perf_counter()
            page.goto(base + "/")
            wait_ready(page)
            ready_s = time.perf_counter() - t0
            first = page.evaluate(
                """async ([b64, h, w]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const r = await window.dermai.model.predict({data: bytes, width: w, height: h});
                return [r.probabilities, performance.now()]; }""",
                [base64.b64encode(x[0].tobytes()).decode(), ref.height, ref.width],
            )
            first_s = time.perf_counter() - t0
            first, first_page_ms = first
            out = page.evaluate(
                """async ([b64, n, h, w]) => {
                const all = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const size = h * w * 3, probs = [], ms = [];
                for (let i = 0; i < n; i++) {
                  const img = {data: all.subarray(i * size, (i + 1) * size), width: w, height: h};
                  const r = await window.dermai.model.predict(img);
                  probs.push(r.probabilities); ms.push(r.inferenceMs);
                }
                return {probs, ms, meta: window.dermai.model.meta,
                        warmupMs: window.dermai.model.warmupMs, d: window.dermai}; }""",
                [base64.b64encode(x.tobytes()).decode(), N_PARITY, ref.height, ref.width],
            )
            assert problems == []
        finally:
            ctx.close()
    got = np.array(out["probs"], dtype=np.float64)
    assert out["meta"] == ref.meta  # the page read the embedded metadata, not a copy
    assert np.allclose(first, got[0], atol=1e-6)
    agree = float(np.mean(got.argmax(1) == want.argmax(1)))
    diff = float(np.abs(got - want).max())
    ms = np.array(out["ms"])
    print(
        f"\n[ondevice] {kind} {model_path.name}: top-1 agreement {agree:.3f} on {N_PARITY} "
        f"images, max |prob diff| {diff:.2e}; browser inference median {np.median(ms):.1f} ms "
        f"(p90 {np.percentile(ms, 90):.1f} ms) per image; first prediction after load "
        f"{first_page_ms / 1000:.2f} s after navigation start in the page ({first_s:.2f} s "
        f"by the test's clock; ready after {ready_s:.2f} s, which includes a "
        f"{out['warmupMs']:.0f} ms warm-up run; in the page: script start "
        f"{out['d']['scriptStartMs']:.0f} ms, WASM runtime {out['d']['runtimeMs']:.0f} ms, "
        f"model fetch+compile+warm-up {out['d']['loadMs'] - out['d']['runtimeMs']:.0f} ms)"
    )
    assert agree >= 0.99
    assert diff <= PROB_TOL[kind]


def test_browser_resize_matches_pillow(browser, site):
    from PIL import Image

    from dermai.core.preprocess import fit

    # HAM's 450x600, upscaling, odd shapes, and Pillow's reduce-first path (>= 6x smaller)
    cases = [
        (450, 600, 150, 200),
        (75, 100, 150, 200),
        (601, 333, 24, 32),
        (97, 131, 150, 200),
        (1000, 1000, 24, 32),
        (400, 602, 24, 32),
    ]
    with ready_page(browser, site) as page:
        for i, (h, w, th, tw) in enumerate(cases):
            src = lesion("bcc", seed=i, height=h, width=w)
            want = np.asarray(fit(src, th, tw))
            got = page.evaluate(
                """([b64, h, w, th, tw]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const r = window.dermai.fit({data: bytes, width: w, height: h}, th, tw);
                return btoa(String.fromCharCode(...r.data)); }""",
                [b64(src), h, w, th, tw],
            )
            got = rgb(got, th, tw)
            assert np.array_equal(got, want), (
                f"{w}x{h} -> {tw}x{th}: {int((got != want).sum())} values differ, max "
                f"{int(np.abs(got.astype(int) - want).max())}"
            )
            assert isinstance(src, Image.Image)


def test_browser_colour_constancy_matches_python(browser, site):
    """Shades of Grey in the page (ondevice.js `shadesOfGrey`, and `OnDeviceModel.prepare` for a
    model whose metadata asks for it) gives `core.preprocess.prepare`'s pixels within 1 grey
    level, for grey world, the usual p = 6, the largest p the param allows and max-RGB."""
    import math

    from PIL import Image

    from dermai.core.preprocess import prepare, shades_of_grey
    from dermai.runtime.tflite import make_metadata

    cases = [(450, 600, 150, 200), (97, 131, 24, 32), (400, 602, 24, 32)]
    ps = [1.0, 6.0, 64.0, math.inf]
    with ready_page(browser, site) as page:
        for i, (h, w, th, tw) in enumerate(cases):
            src = lesion("mel", seed=10 + i, height=h, width=w)
            # a colour cast, so the correction has something to do
            arr = np.asarray(src).astype(float) * np.array([1.15, 0.95, 0.75])
            src = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            for p in ps:
                want = np.asarray(prepare(src, th, tw, p))
                meta = make_metadata(
                    ["a"],
                    th,
                    tw,
                    temperature=1.0,
                    quantization="float32",
                    colour_constancy=p if p < math.inf else "none",
                )
                got = page.evaluate(
                    """async ([b64, h, w, th, tw, p, meta]) => {
                    const m = await import('./ondevice.js');
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const img = {data: bytes, width: w, height: h};
                    const pp = p === null ? Infinity : p;
                    const direct = m.shadesOfGrey(m.fit(img, th, tw), pp);
                    // the model path: the p read from the metadata, as on a real model
                    const model = Object.create(m.OnDeviceModel.prototype);
                    Object.assign(model, {height: th, width: tw,
                                          colourP: m.colourConstancy(meta)});
                    const viaModel = p === null ? direct : model.prepare(img);
                    const enc = (r) => btoa(String.fromCharCode(...r.data));
                    return [enc(direct), enc(viaModel)]; }""",
                    [
                        b64(src),
                        h,
                        w,
                        th,
                        tw,
                        None if p == math.inf else p,
                        meta,
                    ],
                )
                for name, g in zip(("shadesOfGrey", "OnDeviceModel.prepare"), got, strict=True):
                    g = rgb(g, th, tw)
                    d = np.abs(g.astype(int) - want.astype(int))
                    assert d.max() <= 1, (
                        f"{name} p={p} {w}x{h} -> {tw}x{th}: {int((d > 0).sum())} values "
                        f"differ, max {int(d.max())}"
                    )
                fitted = np.asarray(prepare(src, th, tw))
                assert not np.array_equal(want, fitted)  # the step did something
                assert np.array_equal(want, shades_of_grey(fitted, p))


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_installable_and_works_offline(browser, site, tmp_path, viewport):
    expect = sync_api.expect
    photo = tmp_path / "spot.jpg"
    lesion("mel", seed=7, height=600, width=800).save(photo, "JPEG", quality=92)
    p, b = browser
    opts = (
        p.devices["Pixel 7"]
        if viewport == "phone"
        else {"viewport": {"width": 1280, "height": 800}}
    )
    with static_server(site) as (base, httpd):
        ctx = b.new_context(**opts)
        page = ctx.new_page()
        problems: list[str] = []
        watch(page, problems, base)
        try:
            page.goto(base + "/")
            wait_ready(page)
            manifest = page.evaluate("""async () => {
                const link = document.querySelector('link[rel=manifest]');
                return (await fetch(link.href)).json(); }""")
            assert manifest["display"] == "standalone" and manifest["start_url"] == "./"
            assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
            # the service worker has cached every file and controls the page
            page.evaluate("navigator.serviceWorker.ready")
            if not page.evaluate("!!navigator.serviceWorker.controller"):
                page.reload()
                wait_ready(page)
            assert page.evaluate("!!navigator.serviceWorker.controller")
            expect(page.locator("#disclaimer")).to_contain_text("NOT a medical diagnostic tool")

            httpd.shutdown()  # the network is gone: emulated offline and no server either
            ctx.set_offline(True)
            page.reload()
            wait_ready(page)
            page.set_input_files("#file-choose", str(photo))
            items = page.locator("#predictions li.prediction")
            expect(items).to_have_count(3, timeout=30_000)
            for i in range(3):
                expect(items.nth(i).locator(".value")).to_have_text(
                    re.compile(r"^[<>]?\d+(\.\d)?%$")
                )
            expect(page.locator("#result .notice")).to_contain_text("Not a medical diagnosis")
            expect(page.locator("#timing")).to_contain_text("nothing was uploaded")
            expect(page.locator("#status")).to_have_text("Done.")
            page.locator("#result").scroll_into_view_if_needed()
            page.screenshot(path=str(shots() / f"ondevice-{viewport}-offline.png"), scale="css")
            assert problems == []
        finally:
            ctx.close()


# --------------------------------------------------------------------------- the OOD guard


def probe_images(height: int, width: int) -> dict[str, np.ndarray]:
    """In- and out-of-distribution inputs, already fitted to the model: sample-like lesions,
    flat colours, noise, a text page and packaged photos (scikit-image)."""
    from PIL import Image, ImageDraw
    from skimage import data as skdata

    from dermai.core.preprocess import fit

    out = {
        f"lesion-{i}": np.asarray(lesion(c, seed=50 + i, height=height, width=width))
        for i, c in enumerate(["bcc", "mel", "nv", "bkl", "df", "vasc"])
    }
    for name, rgb in {
        "flat-white": (255, 255, 255),
        "flat-red": (200, 20, 30),
        "flat-grey": (128, 128, 128),
    }.items():
        out[name] = np.full((height, width, 3), rgb, np.uint8)
    rng = np.random.default_rng(13)
    out["noise"] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    page = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(page)
    for k in range(12):
        draw.text(
            (10, 8 + 24 * k), "Lorem ipsum dolor sit amet, consectetur 0123456789", fill="black"
        )
    out["text"] = np.asarray(fit(page, height, width))
    for name in ("chelsea", "astronaut", "coffee"):
        out[name] = np.asarray(fit(Image.fromarray(getattr(skdata, name)()), height, width))
    return out


def guard_doc(guard, kind: str = "synthetic sample images") -> dict:
    from dermai.runtime.bundle import ood_message

    return {**guard.to_dict(), "image_kind": kind, "message": ood_message(kind)}


def with_guard(model: Path, doc: dict | None, dest: Path) -> Path:
    """A copy of `model` whose embedded metadata carries `doc` as its OOD guard."""
    from dermai.runtime.tflite import embed_metadata, read_metadata

    meta = read_metadata(model)
    meta.pop("ood", None)
    if doc is not None:
        meta["ood"] = doc
    dest.write_bytes(embed_metadata(model.read_bytes(), meta))
    return dest


def site_for(model: Path, dest: Path) -> Path:
    from dermai.commands.export_web import build

    for rel, data in build(model.read_bytes(), NPM, None, model.name).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def fitted_guard(model_path: Path, method: str):
    """`model_path`'s own embedded guard ("embedded"), or one of `method` fitted on sample
    lesions (Mahalanobis on the logits, as the browser sees only those) whose threshold is the
    median probe score, so both decisions occur and both are compared."""
    from dermai.core import ood
    from dermai.core.ood import Guard
    from dermai.runtime.tflite import TfliteModel

    ref = TfliteModel(model_path, num_threads=1)
    if method == "embedded":
        doc = ref.meta.get("ood")
        if doc is None:
            pytest.skip(
                "the model carries no guard (the tiny stand-in; set "
                "DERMAI_ONDEVICE_MODEL=models/model_int8.tflite)"
            )
        return ref, Guard.from_dict(doc), doc
    x = sample_images(40, ref.height, ref.width).astype(np.float32)
    z = ref(x)
    y = np.arange(len(x)) % len(ref.classes)
    g = ood.fit(
        method,
        train_logits=z,
        train_features=z,
        train_labels=y,
        val_logits=z,
        val_features=z,
        temperature=ref.temperature,
        n_components=8,
        space="logits",
    )
    probes = probe_images(ref.height, ref.width)
    scores = g.score(ref(np.stack(list(probes.values())).astype(np.float32)))
    g.threshold = float(np.median(scores))
    return ref, g, guard_doc(g)


@pytest.mark.parametrize("method", ["embedded", "energy", "max_softmax", "mahalanobis"])
def test_browser_applies_the_embedded_guard_as_python_does(browser, model_path, tmp_path, method):
    ref, guard, doc = fitted_guard(model_path, method)
    model = with_guard(model_path, doc, tmp_path / "model.tflite")
    check_guard_in_browser(browser, model, ref, guard, tmp_path, method != "embedded")


def check_guard_in_browser(browser, model: Path, ref, guard, tmp_path: Path, both: bool) -> None:
    """The page's guard decisions and scores on the probe images equal Python's for the same
    file (`guard_of`: the embedded document, and the trunk output for a trunk guard)."""
    from dermai.runtime.bundle import guard_of

    py_guard, features_fn = guard_of(model)  # Python reads the same embedded document
    assert py_guard is not None and py_guard.to_dict() == guard.to_dict()
    assert (features_fn is not None) == (guard.space == "trunk")
    probes = probe_images(ref.height, ref.width)
    x = np.stack(list(probes.values()))
    xf = x.astype(np.float32)
    want = py_guard.score(ref(xf), None if features_fn is None else features_fn(xf))
    site = site_for(model, tmp_path / "site")
    _, b = browser
    with static_server(site) as (base, _):
        ctx = b.new_context()
        page = ctx.new_page()
        problems: list[str] = []
        watch(page, problems, base)
        try:
            page.goto(base + "/")
            wait_ready(page)
            got = page.evaluate(
                """async ([b64, n, h, w]) => {
                const all = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const size = h * w * 3, out = [];
                for (let i = 0; i < n; i++) {
                  const img = {data: all.subarray(i * size, (i + 1) * size), width: w, height: h};
                  out.push((await window.dermai.model.predict(img)).ood);
                }
                return out; }""",
                [base64.b64encode(x.tobytes()).decode(), len(x), ref.height, ref.width],
            )
            info = page.locator("#guard-info")
            sync_api.expect(info).to_have_attribute("data-guard", guard.method)
            sync_api.expect(info).to_contain_text("get no answer")
            assert problems == []
        finally:
            ctx.close()
    score = np.array([g["score"] for g in got])
    inside = [g["inDistribution"] for g in got]
    assert inside == (want >= guard.threshold).tolist()
    assert np.abs(score - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    if both:
        assert any(inside) and not all(inside)  # both decisions were compared
    print(
        f"\n[ondevice] guard {guard.method}: max |score diff| JS vs Python "
        f"{np.abs(score - want).max():.1e}; accepted "
        + ", ".join(f"{k}={'yes' if a else 'no'}" for k, a in zip(probes, inside, strict=True))
    )


def trunk_guarded(tmp: Path):
    """The tiny stand-in exported to int8 WITH a PPCA guard on its pooled frozen trunk (as
    `dermai export` exports a model whose `ood.json` scores the trunk), fitted on sample
    lesions; its threshold is then set at the median probe score, so both decisions occur.
    Returns (the .tflite, its runner, the guard)."""
    from dermai.core import ood
    from dermai.runtime.convert import export_bytes
    from dermai.runtime.inference import logits_model, trunk_model
    from dermai.runtime.tflite import TfliteModel

    classes = ["bcc", "mel", "nv"]
    km = tinymodel.build(classes)
    x = sample_images(40, tinymodel.H, tinymodel.W).astype(np.float32)
    trunk = np.asarray(trunk_model(km)(x))
    z = np.asarray(logits_model(km)(x))
    g = ood.fit(
        "ppca",
        train_logits=z,
        train_features=trunk,
        train_labels=np.zeros(len(x)),
        val_logits=z,
        val_features=trunk,
        n_components=4,
        space="trunk",
        temperature=1.3,
    )
    blob = export_bytes(km, classes, 1.3, x, ("int8",), ood=guard_doc(g))["int8"]
    (tmp / "trunk.tflite").write_bytes(blob)
    ref = TfliteModel(tmp / "trunk.tflite", num_threads=1)
    assert ref.meta["outputs"] == ["logits", "trunk"]
    probes = np.stack(list(probe_images(ref.height, ref.width).values())).astype(np.float32)
    g.threshold = float(np.median(g.score(ref(probes), ref.trunk(probes))))
    return with_guard(tmp / "trunk.tflite", guard_doc(g), tmp / "model.tflite"), ref, g


def test_browser_applies_a_trunk_guard_from_the_models_second_output(browser, tmp_path):
    """PPCA on the frozen trunk (the pipeline's default guard): the page reads the .tflite's
    second output and scores it as core.ood does, decision for decision."""
    model, ref, guard = trunk_guarded(tmp_path)
    check_guard_in_browser(browser, model, ref, guard, tmp_path, True)


@pytest.mark.parametrize("kind", ["penultimate", "trunk without its output"])
def test_a_guard_the_browser_cannot_compute_is_not_claimed(browser, model_path, tmp_path, kind):
    """Mahalanobis on the penultimate features (which no .tflite outputs), or a trunk guard
    embedded in a model without the trunk output: the page says it does not check."""
    from dermai.core.ood import Guard, Mahalanobis, Ppca
    from dermai.runtime.tflite import read_metadata

    rng = np.random.default_rng(0)
    if kind == "penultimate":
        maha = Mahalanobis(
            rng.normal(size=16), rng.normal(size=(4, 16)), rng.normal(size=(3, 4)), np.eye(4)
        )
        g, why = Guard("mahalanobis", -5.0, 0.95, "features", 1.0, maha), "internal features"
    else:
        if read_metadata(model_path).get("outputs"):
            pytest.skip("this model has the trunk output")
        ppca = Ppca(rng.normal(size=8), np.eye(8)[:2], np.ones(2), 1.0)
        g, why = Guard("ppca", -5.0, 0.95, "trunk", ppca=ppca), "does not output"
    site = site_for(with_guard(model_path, guard_doc(g), tmp_path / "model.tflite"), tmp_path / "s")
    with ready_page(browser, site) as page:
        info = page.locator("#guard-info")
        sync_api.expect(info).to_have_attribute("data-guard", "none")
        sync_api.expect(info).to_contain_text("does not check whether a photo looks like")
        sync_api.expect(info).to_contain_text(why)
        h, w = page.evaluate("[window.dermai.model.height, window.dermai.model.width]")
        r = page.evaluate(
            """async ([h, w]) => (await window.dermai.model.predict(
            {data: new Uint8Array(h * w * 3), width: w, height: h})).ood""",
            [h, w],
        )
        assert r is None


def guarded_phone_model(model_path: Path, tmp_path: Path) -> Path:
    """The model with the guard the screenshots show: its own embedded one (the sample model),
    else, for the untrained stand-in, Mahalanobis on logits fitted on sample lesions."""
    from dermai.runtime.tflite import read_metadata

    if read_metadata(model_path).get("ood"):
        return model_path
    from dermai.core import ood

    ref, _, _ = fitted_guard(model_path, "energy")
    x = sample_images(60, ref.height, ref.width).astype(np.float32)
    z = ref(x)
    y = np.arange(len(x)) % len(ref.classes)
    g = ood.fit(
        "mahalanobis",
        train_logits=z,
        train_features=z,
        train_labels=y,
        val_logits=z,
        val_features=z,
        temperature=ref.temperature,
        n_components=8,
        space="logits",
        keep=0.95,
    )
    return with_guard(model_path, guard_doc(g), tmp_path / "guarded.tflite")


def test_phone_screenshots_of_a_prediction_and_of_the_guard_tripping(browser, model_path, tmp_path):
    """Pixel 7: a sample-like lesion gets its top 3; a cat photo gets the refusal and no
    probabilities, as Python decides for the same files. Screenshots for the README."""
    from PIL import Image
    from skimage import data as skdata

    from dermai.io.images import read
    from dermai.runtime import bundle as bundle_mod

    expect = sync_api.expect
    spot, cat = tmp_path / "spot.png", tmp_path / "cat.png"
    lesion("nv", seed=11, height=450, width=600).save(spot)
    Image.fromarray(skdata.chelsea()).save(cat)
    model = guarded_phone_model(model_path, tmp_path)
    predictor = bundle_mod.load(model, num_threads=1)
    guard, _ = bundle_mod.guard_of(model)
    py = {
        p.name: bool(guard.accept(predictor.logits_fn(predictor.prepare(read(p))[None]))[0])
        for p in (spot, cat)
    }
    assert py == {"spot.png": True, "cat.png": False}, py
    site = site_for(model, tmp_path / "site")
    p, b = browser
    with static_server(site) as (base, _):
        ctx = b.new_context(**p.devices["Pixel 7"])
        page = ctx.new_page()
        problems: list[str] = []
        watch(page, problems, base)
        try:
            page.goto(base + "/")
            wait_ready(page)
            page.set_input_files("#file-choose", str(spot))
            expect(page.locator("#status")).to_have_text("Done.", timeout=30_000)
            expect(page.locator("#predictions li.prediction")).to_have_count(3)
            expect(page.locator("#ood")).to_be_hidden()
            page.locator("#result").scroll_into_view_if_needed()
            page.screenshot(path=str(shots() / "ondevice-phone-prediction.png"), scale="css")

            page.set_input_files("#file-choose", str(cat))
            expect(page.locator("#status")).to_have_text("Done.", timeout=30_000)
            ood_text = page.locator("#ood")
            expect(ood_text).to_be_visible()
            expect(ood_text).to_have_text(bundle_mod.ood_message(guard_kind(model)))
            expect(page.locator("#predictions")).to_be_hidden()
            expect(page.locator("#predictions li")).to_have_count(0)
            expect(page.locator("#answers-title")).to_be_hidden()
            assert not re.search(r"\d%", page.locator("#result").inner_text())
            ood_text.scroll_into_view_if_needed()
            page.screenshot(path=str(shots() / "ondevice-phone-guard.png"), scale="css")
            assert problems == []
        finally:
            ctx.close()


def guard_kind(model: Path) -> str:
    from dermai.runtime.tflite import read_metadata

    return read_metadata(model)["ood"]["image_kind"]
