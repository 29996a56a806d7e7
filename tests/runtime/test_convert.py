"""Selective int8 quantization (`export.float_stages`): which ops stay float, on the tiny Lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy import CLASSES, TEMPERATURE, H, W, representative
from dermai.errors import DermaiError
from dermai.runtime.convert import export_bytes, float_stage_pattern

# The module fixture converts the tiny Lite0 to int8 twice (the session's and a 2-float-stage
# one): 140 s of setup under load 13 on 2 cores, and it ran past the 300 s default under more.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def tiny(tiny_lite0, tiny_int8) -> dict[str, object]:
    """The session's shared tiny Lite0 (conftest.py): its all-int8 export (float_stages 0, the
    default path: `tiny_int8`, converted with this same call) and one with 2 float stages."""
    import keras

    model = keras.saving.load_model(tiny_lite0, compile=False)
    rep = representative()
    out: dict[str, object] = {"model": model, "rep": rep, 0: tiny_int8.read_bytes()}
    out[2] = export_bytes(model, CLASSES, TEMPERATURE, rep, ("int8",), float_stages=2)["int8"]
    return out


def tensors(blob: bytes) -> list[tuple[str, type]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob)
    return [(d["name"], d["dtype"]) for d in it.get_tensor_details()]


def test_pattern_names_input_layers_and_the_first_stages_only():
    assert float_stage_pattern(0) is None
    p = float_stage_pattern(2)
    assert p is not None
    for name in (
        "logits_1/lower_1/rescaling_1/mul",
        "logits_1/lower_1/stem_activation_1/Relu6;logits_1/lower_1/stem_conv_1/convolution",
        "a/block1a_activation_1/Relu6;a/block1a_dwconv_1/depthwise",
        "logits_1/lower_1/block2b_add_1/Add",
    ):
        assert p.search(name), name
    for name in (
        "logits_1/lower_1/block3a_expand_conv_1/convolution",
        "logits_1/upper_1/top_conv_1/convolution",
        "StatefulPartitionedCall_1:0",
        "x/myblock1a_conv",  # a component must start with the layer name
    ):
        assert not p.search(name), name
    assert float_stage_pattern(7).search("u/block7a_project_conv_1/convolution")


def test_float_stages_stay_float_and_the_rest_int8(tiny):
    full = tensors(tiny[0])
    assert not [n for n, t in full if t == np.float32 and "block" in n]  # all-int8 default path
    mixed = tensors(tiny[2])
    floats = {n for n, t in mixed if t == np.float32}
    for layer in ("stem_conv", "block1a_dwconv", "block2a_project_conv", "block2b_add"):
        assert any(layer in n for n in floats), layer
        assert not any(layer in n and t == np.int8 for n, t in mixed), layer
    for layer in ("block3a_dwconv", "block4a_expand_conv", "top_conv"):
        assert any(layer in n and t == np.int8 for n, t in mixed), layer
        assert not any(layer in n for n in floats), layer


def test_selective_model_keeps_int8_io_and_tracks_the_full_int8_one(tiny):
    from ai_edge_litert.interpreter import Interpreter

    from dermai.runtime.inference import logits_model

    x = tiny["rep"]
    ref = logits_model(tiny["model"]).predict(x, verbose=0)
    outs = {}
    for stages in (0, 2):
        it = Interpreter(model_content=tiny[stages])
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        assert i["dtype"] == np.int8 and o["dtype"] == np.int8
        (si, zi), (so, zo) = i["quantization"], o["quantization"]
        ys = []
        for img in x:
            q = np.clip(np.round(img / si + zi), -128, 127).astype(np.int8)
            it.set_tensor(i["index"], q[None])
            it.invoke()
            ys.append((it.get_tensor(o["index"]).astype(np.float32) - zo) * so)
        outs[stages] = np.concatenate(ys)
    assert np.corrcoef(ref.ravel(), outs[2].ravel())[0, 1] > 0.5
    assert not np.array_equal(outs[0], outs[2])  # the param changed the graph


def test_selective_export_is_byte_deterministic(tiny):
    again = export_bytes(
        tiny["model"], CLASSES, TEMPERATURE, tiny["rep"], ("int8",), float_stages=2
    )
    assert again["int8"] == tiny[2]


def test_float_stages_on_a_model_without_such_layers_is_refused(tmp_path: Path):
    import keras

    from dermai.runtime.convert import convert

    inp = keras.Input((H, W, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(x))
    rep = np.random.default_rng(0).uniform(0, 255, (4, H, W, 3)).astype(np.float32)
    with pytest.raises(DermaiError, match="float_stages=1"):
        convert(model, "int8", rep, float_stages=1)
    assert len(convert(model, "int8", rep, float_stages=0)) > 0
