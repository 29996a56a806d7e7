"""Without `--debug`, `dvc repro` (what `make run` runs) and `dermai predict` print no line of
TensorFlow's, absl's or LiteRT's C++ logs; with `--debug` those lines are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import copy_run, sh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the shared tiny `dvc repro`

# Written independently of io/native_stderr.NOISE, and wider: any absl-style line, absl's
# notice, and every TensorFlow/LiteRT start-up or converter notice seen on this project.
CPP_LOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:|absl::InitializeLog|oneDNN|XNNPACK|fully_quantize"
    r"|cpu_feature_guard|TensorFlow binary is optimized|rebuild TensorFlow|SavedModel"
)


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if CPP_LOG.search(line)]


def test_dvc_repro_prints_no_cpp_log_lines(tiny_run: Path) -> None:
    log = (tiny_run.parent / "repro.log").read_text()
    # The stages that run TensorFlow ran, and their Python log lines still show (the thin
    # features stage logs from the module it calls).
    loggers = {
        "features": "dermai.models.features",
        "train": "dermai.stages.train",
        "evaluate": "dermai.stages.evaluate",
        "export": "dermai.stages.export",
    }
    for stage, logger in loggers.items():
        assert f"Running stage '{stage}'" in log and f" INFO {logger}:" in log, stage
    assert noise(log) == []


def test_predict_prints_none_and_debug_shows_them(tiny_run: Path, tmp_path: Path) -> None:
    project = copy_run(tiny_run, tmp_path / "proj")
    images = "data/raw/sample"
    for model in ("models/model.keras", "models/model_int8.tflite"):
        done = sh("dermai", "predict", "--model", model, images, cwd=project)
        assert "predicted" in done.stderr and '"predictions"' in done.stdout, model
        assert noise(done.stdout + done.stderr) == [], model
    debug = sh(
        "dermai", "--debug", "predict", "--model", "models/model_int8.tflite", images, cwd=project
    )
    assert any("XNNPACK" in line for line in noise(debug.stderr)), debug.stderr[-2000:]
