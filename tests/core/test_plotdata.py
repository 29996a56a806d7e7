"""Long-format plot rows: every class in a field, legends with the number they promise,
confusion rows = actual class, training curves with phase and kept epoch."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import auc, confusion_matrix, roc_auc_score

from dermai.core import plotdata
from dermai.core.evaluation import calibration_report


def toy(n: int = 200, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p, logits


CLASSES = ["one", "two", "three", "four"]


def test_roc_rows_carry_each_class_and_its_auc_in_the_legend():
    y, p, _ = toy()
    rows = plotdata.roc_rows(y, p, CLASSES)
    assert [c for c in CLASSES if any(r["class"] == c for r in rows)] == CLASSES
    for c, cls in enumerate(CLASSES):
        mine = [r for r in rows if r["class"] == cls]
        want = roc_auc_score(y == c, p[:, c])
        assert mine[0]["legend"] == f"{cls} (AUC {want:.3f}, n={int((y == c).sum())})"
        # The curve itself integrates to the AUC in its legend (trapezoids, rounding aside).
        area = auc([r["fpr"] for r in mine], [r["tpr"] for r in mine])
        assert abs(area - want) < 1e-3
        assert (mine[0]["fpr"], mine[0]["tpr"]) == (0.0, 0.0)
        assert (mine[-1]["fpr"], mine[-1]["tpr"]) == (1.0, 1.0)


def test_a_class_without_both_outcomes_has_no_curve_rather_than_a_wrong_one():
    y, p, _ = toy()
    y = np.where(y == 3, 0, y)  # class "four" never occurs
    assert {r["class"] for r in plotdata.roc_rows(y, p, CLASSES)} == {"one", "two", "three"}
    assert {r["class"] for r in plotdata.pr_rows(y, p, CLASSES)} == {"one", "two", "three"}


def test_pr_rows_carry_prevalence_as_the_chance_level():
    y, p, _ = toy()
    for r in plotdata.pr_rows(y, p, CLASSES):
        c = CLASSES.index(r["class"])
        assert r["prevalence"] == round(float((y == c).mean()), plotdata.DIGITS)
        assert 0.0 <= r["precision"] <= 1.0 and 0.0 <= r["recall"] <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_confusion_rows_match_sklearn_with_actual_as_rows(pairs):
    y = np.array([a for a, _ in pairs])
    pred = np.array([b for _, b in pairs])
    m = confusion_matrix(y, pred, labels=range(4))
    rows = plotdata.confusion_rows(m.tolist(), CLASSES)
    assert len(rows) == 16
    for r in rows:
        i, j = r["actual_index"], r["predicted_index"]
        assert (r["actual"], r["predicted"]) == (CLASSES[i], CLASSES[j])
        assert r["count"] == int(((y == i) & (pred == j)).sum())
    for i in range(4):  # each non-empty actual row sums to 1 after normalising
        share = sum(r["row_share"] for r in rows if r["actual_index"] == i)
        assert abs(share - (1.0 if (y == i).any() else 0.0)) < 1e-4


def test_reliability_rows_keep_non_empty_bins_and_name_both_curves_with_ece():
    y, _, logits = toy(n=300)
    cal = calibration_report(y, logits, temperature=1.7, bins=10)
    rows = plotdata.reliability_rows(cal)
    before = [r for r in rows if r["curve_index"] == 0]
    after = [r for r in rows if r["curve_index"] == 1]
    assert sum(r["count"] for r in before) == sum(r["count"] for r in after) == 300
    assert before[0]["curve"] == f"before calibration (ECE {cal['ece_before']:.3f})"
    assert after[0]["curve"] == f"after temperature T=1.70 (ECE {cal['ece_after']:.3f})"
    assert all(0 <= r["confidence"] <= 1 and 0 <= r["accuracy"] <= 1 for r in rows)


def test_training_rows_mark_phase_and_only_the_kept_epoch():
    hist = [
        (0, 1, {"train/loss": 1.2, "train/accuracy": 0.5, "val/accuracy": 0.4}),
        (1, 1, {"train/loss": 1.0, "train/accuracy": 0.6, "val/accuracy": float("nan")}),
        (2, 2, {"train/loss": 0.8, "train/accuracy": 0.7, "val/balanced_accuracy": 0.6}),
    ]
    rows = plotdata.training_rows(hist, kept_step=2)
    assert {(r["step"], r["phase"]) for r in rows} == {(0, "head"), (1, "head"), (2, "fine-tune")}
    assert {r["step"] for r in rows if r["kept"]} == {2}
    assert {(r["split"], r["metric"]) for r in rows} == {
        ("train", "loss"),
        ("train", "accuracy"),
        ("validation", "accuracy"),
        ("validation", "balanced accuracy"),
    }
    # NaN is a gap, not a point.
    assert not any(r["step"] == 1 and r["split"] == "validation" for r in rows)
