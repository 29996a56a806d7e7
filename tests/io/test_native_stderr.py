"""`quiet_native`: C++ log lines written to fd 2 are hidden, everything else gets through."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dermai.io.native_stderr import is_noise, quiet_native

# What TensorFlow 2.21, its converter and LiteRT printed here with TF_CPP_MIN_LOG_LEVEL=0
# (`dermai export` on the sample), plus oneDNN's start-up notice.
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796639910.432350   27797 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "W0000 00:00:1796639974.110610   27797 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.",
    "I0000 00:00:1796639974.111068   27797 reader.cc:83] Reading SavedModel from: /tmp/x",
    "fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "2026-12-07 10:38:13.123456: I tensorflow/core/util/port.cc:153] oneDNN custom operations "
    "are on. You may see slightly different numerical results.",
]
KEPT = [
    "10:38:13 INFO dermai.stages.export: converting (float32, and int8 calibrated on 200 images)",
    "10:38:13 WARNING dermai.commands.predict: 2 image(s) do not look like the training data",
    "dermai export: error: model not found: models/model.keras",
    "/x/convert.py:12: UserWarning: Statistics for quantized inputs were expected",
    "Traceback (most recent call last):",
]


def test_noise_is_recognised_and_our_lines_are_not() -> None:
    assert [line for line in NOISE if not is_noise(line)] == []
    assert [line for line in KEPT if is_noise(line)] == []


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_a_dermai_log_line_is_never_noise(message: str) -> None:
    assert not is_noise(f"10:38:13 INFO dermai.x: {message}")


def write_fd2(lines: list[str]) -> None:
    os.write(2, "".join(f"{line}\n" for line in lines).encode())


def test_quiet_native_hides_cpp_lines_and_passes_the_rest(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DERMAI_DEBUG", raising=False)
    with quiet_native():
        write_fd2([NOISE[0], KEPT[0], NOISE[5]])
        print(KEPT[3], file=sys.stderr)
        write_fd2([NOISE[6], KEPT[2]])
    err = capfd.readouterr().err.splitlines()
    # (under capfd, sys.stderr does not write through fd 2, so its line's place is not checked)
    assert [line for line in err if line != KEPT[3]] == [KEPT[0], KEPT[2]] and KEPT[3] in err
    write_fd2([NOISE[6]])  # fd 2 is the real stderr again afterwards
    assert capfd.readouterr().err.splitlines() == [NOISE[6]]


def test_quiet_native_restores_fd2_when_the_block_raises(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DERMAI_DEBUG", raising=False)
    with pytest.raises(RuntimeError), quiet_native():
        write_fd2([NOISE[5], KEPT[1]])
        raise RuntimeError("boom")
    write_fd2([KEPT[4]])
    assert capfd.readouterr().err.splitlines() == [KEPT[1], KEPT[4]]


def test_debug_shows_everything(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DERMAI_DEBUG", "1")
    with quiet_native():
        write_fd2(NOISE[:2])
    assert capfd.readouterr().err.splitlines() == NOISE[:2]
