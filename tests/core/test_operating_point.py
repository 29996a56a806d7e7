"""The operating point: threshold choice against a brute-force oracle, the decision rule, the
rates against scikit-learn and plain counting, and the report's intervals on the report's
resamples."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from dermai.core import metrics
from dermai.core.bootstrap import bootstrap_cis
from dermai.core.operating_point import (
    DEFAULT,
    choose_threshold,
    confusions,
    decide,
    decisions_report,
    markdown,
    needed_hits,
    one_vs_rest,
    one_vs_rest_markdown,
    operating_points,
    rates,
)

CLASSES = ["a", "b", "c"]


def data(n: int, seed: int = 0, k: int = 3, boost: float = 0.3, grid: int = 0):
    """Labels and probabilities; `grid` > 0 rounds them to that many steps, for ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += boost
    p = p / p.sum(1, keepdims=True)
    if grid:
        p = np.round(p * grid) / grid
    return y, p


def oracle_threshold(y, p, target, recall):
    """Every candidate threshold (each distinct score, of any image), its recall counted image
    by image with exact fractions; the highest candidate that reaches `recall`."""
    pos = [float(s) for s, t in zip(p[:, target], y, strict=True) if t == target]
    best = None
    for t in sorted({float(s) for s in p[:, target]}):
        hits = sum(1 for s in pos if s >= t)
        if Fraction(hits, len(pos)) >= Fraction(str(recall)):
            best = t
    return best


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 60),
    recall=st.sampled_from([0.05, 0.1, 1 / 3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0]),
    grid=st.sampled_from([0, 4, 20]),
    target=st.integers(0, 2),
)
def test_threshold_is_the_oracles(seed, n, recall, grid, target):
    y, p = data(n, seed, grid=grid)
    if not (y == target).any():
        with pytest.raises(ValueError, match="no images"):
            choose_threshold(y, p, target, recall)
        return
    t = choose_threshold(y, p, target, recall)
    assert t == oracle_threshold(y, p, target, recall)
    flagged = decide(p, target, t) == target
    assert np.mean(flagged[y == target]) >= recall - 1e-12  # reaches the asked recall on val


@pytest.mark.parametrize(
    ("recall", "n", "k"),
    [(0.8, 10, 8), (0.7, 10, 7), (0.9, 10, 9), (1.0, 7, 7), (0.01, 7, 1), (1 / 3, 3, 1)],
)
def test_needed_hits_is_exact_where_floats_are_not(recall, n, k):
    assert needed_hits(recall, n) == k


@pytest.mark.parametrize("recall", [0.0, -0.1, 1.01])
def test_a_recall_outside_0_1_is_refused(recall):
    with pytest.raises(ValueError, match="recall"):
        needed_hits(recall, 5)


def test_decision_rule_by_hand():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.15, 0.75], [0.35, 0.4, 0.25]])
    assert decide(p, 2, None).tolist() == [0, 1, 2, 1]  # argmax
    assert decide(p, 2, 0.25).tolist() == [0, 2, 2, 2]  # p_c >= 0.25 flagged
    # above the target's own argmax level: an image whose argmax is the target goes elsewhere
    assert decide(p, 2, 0.8).tolist() == [0, 1, 1, 1]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 50), target=st.integers(0, 2))
def test_rates_match_counting_and_sklearn(seed, n, target):
    y, p = data(n, seed)
    pred = decide(p, target, float(np.random.default_rng(seed).uniform(0, 1)))
    cm = confusions(y, pred, 3)
    assert cm.tolist() == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    r = rates(cm, target)
    pos, flag = y == target, pred == target

    def same(got, want):
        assert (np.isnan(got) and want is None) or got == pytest.approx(want)

    same(r["sensitivity"], np.mean(flag[pos]) if pos.any() else None)
    same(r["specificity"], np.mean(~flag[~pos]) if (~pos).any() else None)
    same(r["precision"], np.mean(pos[flag]) if flag.any() else None)
    same(r["flagged"], np.mean(flag))
    same(r["accuracy"], np.mean(pred == y))
    want_bacc = balanced_accuracy_score(y, pred) if len(set(y)) else None
    assert metrics.balanced_accuracy(y, pred, 3) == pytest.approx(want_bacc)
    same(r["balanced_accuracy"], want_bacc)


def test_resampled_confusions_are_each_resamples():
    y, p = data(30, 4)
    pred = p.argmax(1)
    idx = np.random.default_rng(0).integers(0, 30, (5, 30))
    many = confusions(y, pred, 3, idx)
    for r in range(5):
        assert many[r].tolist() == confusions(y[idx[r]], pred[idx[r]], 3).tolist()


def test_intervals_are_the_report_bootstraps():
    """Each decision's interval is `bootstrap_cis` of the same rate, same seed: the same
    resamples as the rest of the evaluation report."""
    y, p = data(80, 7)
    preds = {DEFAULT: decide(p, 1, None), "op": decide(p, 1, 0.2)}
    rep = decisions_report(y, preds, CLASSES, 1, n_bootstrap=200, seed=5)

    def fn(key, pred_of):
        return lambda yy, pp: float(rates(confusions(yy, pred_of(pp), 3), 1)[key])

    for name, pred in preds.items():
        want = bootstrap_cis(
            {
                "specificity": fn("specificity", lambda q: q),
                "accuracy": fn("accuracy", lambda q: q),
            },
            y,
            pred,
            n_resamples=200,
            seed=5,
        )
        got = rep["decisions"][name]
        for key in want:
            assert got[key]["value"] == pytest.approx(want[key].point)
            assert got[key]["low"] == pytest.approx(want[key].low)
            assert got[key]["high"] == pytest.approx(want[key].high)
    cost = rep["cost"]["op"]["specificity"]
    d = (
        rep["decisions"]["op"]["specificity"]["value"]
        - rep["decisions"][DEFAULT]["specificity"]["value"]
    )
    assert cost["diff"] == pytest.approx(d)
    assert cost["low"] <= cost["diff"] <= cost["high"]
    assert "recall b" not in rep["decisions"]["op"]  # the target's recall is its sensitivity
    assert {"recall a", "recall c"} <= set(rep["decisions"]["op"])


def test_operating_points_choose_on_val_and_report_on_test():
    yv, pv = data(200, 1, boost=0.1)
    yt, pt = data(150, 2, boost=0.1)
    rep = operating_points((yv, pv), (yt, pt), CLASSES, "c", [0.8, 0.95], n_bootstrap=100, seed=0)
    for name, r in (("recall>=0.8", 0.8), ("recall>=0.95", 0.95)):
        t = rep["thresholds"][name]["threshold"]
        assert t == choose_threshold(yv, pv, 2, r)  # from val only
        assert rep["thresholds"][name]["val"]["sensitivity"] >= r
        flag = decide(pt, 2, t) == 2
        test = rep["test"]["decisions"][name]
        assert test["sensitivity"]["value"] == pytest.approx(np.mean(flag[yt == 2]))
        assert test["specificity"]["value"] == pytest.approx(np.mean(~flag[yt != 2]))
    d = rep["test"]["decisions"]
    assert d[DEFAULT]["accuracy"]["value"] == pytest.approx(np.mean(pt.argmax(1) == yt))
    # a higher asked recall flags at least as many, so it never finds fewer
    assert (
        rep["thresholds"]["recall>=0.95"]["threshold"]
        <= rep["thresholds"]["recall>=0.8"]["threshold"]
    )
    assert d["recall>=0.95"]["sensitivity"]["value"] >= d["recall>=0.8"]["sensitivity"]["value"]
    text = markdown(rep)
    # what the stage writes (JSON, keys sorted) renders the same table
    assert markdown(json.loads(json.dumps(rep, sort_keys=True))) == text
    assert "| threshold on p_c (chosen on val) | argmax |" in text
    assert "c recall>=0.8 on val" in text and "cost against the default" in text
    with pytest.raises(ValueError, match="not one of the classes"):
        operating_points((yv, pv), (yt, pt), CLASSES, "mel", [0.8], n_bootstrap=10, seed=0)


def test_one_vs_rest_is_each_class_at_the_argmax():
    y, p = data(90, 3)
    table = one_vs_rest(y, p, CLASSES, n_bootstrap=100, seed=1)
    pred = p.argmax(1)
    for c, cls in enumerate(CLASSES):
        assert table[cls]["sensitivity"]["value"] == pytest.approx(np.mean(pred[y == c] == c))
        assert table[cls]["specificity"]["value"] == pytest.approx(np.mean(pred[y != c] != c))
        for key in ("sensitivity", "specificity"):
            v = table[cls][key]
            assert v["low"] <= v["value"] <= v["high"]
    text = one_vs_rest_markdown(table)
    assert text.count("\n") == len(CLASSES) + 1
    off = one_vs_rest(y, p, CLASSES, n_bootstrap=0, seed=1)
    assert "low" not in off["a"]["sensitivity"]
