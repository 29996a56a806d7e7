"""The on-device page with a model trained with patient metadata (`model.metadata`): the page
offers one optional control per field ("unknown" by default, the choices the model's recorded
vocabulary), and LiteRT.js in Chromium gives the probabilities Python LiteRT gives on the same
int8 .tflite, with all, some and none of the fields known (JS = Python parity)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from test_ondevice import CHROMIUM, NPM, PROB_TOL, browser, ready_page  # noqa: F401 (fixture)

import tinymodel
from deploy import lesion

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium"),
    pytest.mark.skipif(
        not (NPM / "@litertjs" / "core").is_dir(), reason="needs LiteRT.js: `make web-deps`"
    ),
]

CLASSES = ["bcc", "mel", "nv"]
ANSWERS = [
    {"age": "45", "sex": "female", "site": "back"},
    {"site": "face"},
    {"sex": "male"},
    {},
]


@pytest.fixture(scope="module")
def meta_model(tmp_path_factory) -> tuple[Path, object]:
    """A tiny stand-in classifier whose head takes age, sex and site (metadata weights made
    large, so the answers move the probabilities), exported to int8 LiteRT with its encoding."""
    import keras

    from dermai.core import metadata
    from dermai.models.classifier import assemble, build_head
    from dermai.runtime.convert import export_bytes

    enc = metadata.fit(
        ["age", "sex", "site"],
        {"age": ["40"], "sex": ["female", "male"], "site": ["back", "face", "arm"]},
    )
    base = tinymodel.build(CLASSES)
    lower, upper = base.get_layer("lower"), base.get_layer("upper")
    head = build_head(16, len(CLASSES), 0.3, 0.0, enc.width)
    dense = head.get_layer("logits")
    kernel, bias = dense.get_weights()
    rng = np.random.default_rng(0)
    kernel[:16] = base.layers[-1].get_layer("logits").get_weights()[0]
    kernel[16:] = rng.normal(0, 2.0, kernel[16:].shape)
    dense.set_weights([kernel, bias])
    model = assemble(lower, upper, head, (tinymodel.H, tinymodel.W, 3), CLASSES)
    assert isinstance(model, keras.Model)
    rep = np.stack(
        [
            np.asarray(lesion(c, seed=i, height=tinymodel.H, width=tinymodel.W), np.float32)
            for i, c in enumerate(CLASSES * 6)
        ]
    )
    rep_m = np.stack([enc.encode(ANSWERS[i % len(ANSWERS)]) for i in range(len(rep))])
    blob = export_bytes(
        model, CLASSES, 1.3, rep, ("int8",), metadata=enc.to_dict(), representative_metadata=rep_m
    )["int8"]
    path = tmp_path_factory.mktemp("ondevice-meta") / "model_int8.tflite"
    path.write_bytes(blob)
    return path, enc


@pytest.fixture(scope="module")
def meta_site(meta_model, tmp_path_factory) -> Path:
    from dermai.commands.export_web import build

    path, _ = meta_model
    out = tmp_path_factory.mktemp("site-meta")
    for rel, data in build(path.read_bytes(), NPM, "synthetic images", path.name).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out


def test_the_page_offers_the_fields_and_matches_python(browser, meta_model, meta_site) -> None:  # noqa: F811
    from dermai.runtime.inference import softmax
    from dermai.runtime.tflite import TfliteModel

    path, enc = meta_model
    ref = TfliteModel(path, num_threads=1)
    x = np.stack(
        [
            np.asarray(lesion(c, seed=50 + i, height=ref.height, width=ref.width))
            for i, c in enumerate(CLASSES * 2)
        ]
    )
    with ready_page(browser, meta_site) as page:
        assert page.locator("#metadata").is_visible()
        options = page.eval_on_selector_all("#meta-site option", "els => els.map(e => e.value)")
        assert options == ["", "arm", "back", "face"]  # "" = unknown, the default
        assert page.input_value("#meta-sex") == "" and page.input_value("#meta-age") == ""
        got = page.evaluate(
            """async ([b64, n, h, w, answers]) => {
            const all = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const size = h * w * 3, out = [];
            for (const a of answers) {
              for (let i = 0; i < n; i++) {
                const img = {data: all.subarray(i * size, (i + 1) * size), width: w, height: h};
                out.push((await window.dermai.model.predict(img, a)).probabilities);
              }
            }
            return out; }""",
            [base64.b64encode(x.tobytes()).decode(), len(x), ref.height, ref.width, ANSWERS],
        )
    got = np.array(got, dtype=np.float64).reshape(len(ANSWERS), len(x), len(CLASSES))
    for k, answers in enumerate(ANSWERS):
        m = np.tile(enc.encode(answers), (len(x), 1))
        want = softmax(ref(x.astype(np.float32), m), ref.temperature)
        assert np.abs(got[k] - want).max() <= PROB_TOL["int8"], answers
        assert (got[k].argmax(1) == want.argmax(1)).all(), answers
    assert np.abs(got[0] - got[3]).max() > 1e-3  # the answers reach the page's prediction
