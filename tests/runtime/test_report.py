"""Publishing an evaluation: what is written is computed from the calibrated probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from dermai.core.evaluation import report
from dermai.runtime.report import EvalSettings, live_session, publish

CLASSES = ["a", "b", "c"]


def test_publish_writes_calibrated_predictions_and_the_core_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(0, 1, (60, 3)) * 3
    logits[np.arange(60), y] += 2
    t = 2.5
    ids = [f"i{k:02d}" for k in range(60)]
    settings = EvalSettings(n_bootstrap=30, ece_bins=5, seed=1, errors_per_class=0)
    live = live_session(tmp_path / "live")
    rep = publish(
        "test",
        y=y,
        logits=logits,
        classes=CLASSES,
        temperature=t,
        ids=ids,
        groups={},
        live=live,
        out_dir=tmp_path,
        settings=settings,
    )
    live.end()

    want = report(y, logits, CLASSES, temperature=t, groups={}, n_bootstrap=30, seed=1, bins=5)
    assert rep == want
    assert json.loads((tmp_path / "report_test.json").read_text()) == want
    pred = pd.read_csv(tmp_path / "predictions_test.csv")
    calibrated = softmax(logits / t, axis=1)
    assert list(pred["image_id"]) == ids
    assert pred[[f"p_{c}" for c in CLASSES]].to_numpy() == pytest.approx(calibrated, abs=1e-6)
    assert pred["confidence"].to_numpy() == pytest.approx(calibrated.max(axis=1), abs=1e-6)
    # the case tells calibrated from raw confidences apart
    assert not np.allclose(softmax(logits, axis=1).max(axis=1), calibrated.max(axis=1), atol=1e-3)
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["test"]["macro_auc"] == pytest.approx(want["macro_auc"])
