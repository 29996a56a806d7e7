"""The pooled CV report and the group bootstrap, against brute force on tiny inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermai.core import cv
from dermai.core.bootstrap import bootstrap_cis, group_resamples

CLASSES = ["acne", "tinea"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=12), st.integers(0, 5))
def test_group_resamples_draw_whole_groups(groups, seed):
    groups = [f"g{g}" for g in groups]
    n_groups = len(set(groups))
    for idx in group_resamples(groups, 20, seed):
        drawn = [groups[i] for i in idx]
        # every drawn group comes whole: its count is a multiple of its size
        for g in set(drawn):
            assert drawn.count(g) % groups.count(g) == 0
        # n_groups draws of whole groups
        assert sum(drawn.count(g) // groups.count(g) for g in set(drawn)) == n_groups


def test_group_bootstrap_is_wider_than_the_item_bootstrap_when_groups_agree():
    """Ten patients, ten photos each, all right or all wrong: the items are not independent, so
    the group interval is wider than the (too optimistic) item interval."""
    correct = np.repeat([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], 10).astype(float)
    groups = np.repeat([f"p{i}" for i in range(10)], 10)
    mean = {"m": lambda c: float(c.mean())}
    item = bootstrap_cis(mean, correct, n_resamples=400, seed=1)["m"]
    group = bootstrap_cis(mean, correct, n_resamples=400, seed=1, groups=groups)["m"]
    assert group.point == item.point == 0.7
    assert group.high - group.low > 2 * (item.high - item.low)


def frames(n: int = 24, k: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    ids = [f"i{j:02d}" for j in range(n)]
    labels = [CLASSES[j % 2] for j in range(n)]
    p = np.clip(
        np.array([0.8 if c == "acne" else 0.3 for c in labels]) + rng.normal(0, 0.2, n), 0, 1
    )
    folds = pd.DataFrame(
        {
            "image_id": ids,
            "fold": [str(j % k) for j in range(n)],
            "leakage_group": [f"g{j // 2}" for j in range(n)],
            "condition": labels,
            "age_group": ["0-29", "60+"] * (n // 2),
        }
    )
    oof = pd.DataFrame({"image_id": ids, "label": labels, "p_acne": p, "p_tinea": 1 - p})
    return oof.sample(frac=1, random_state=1), folds


def test_report_pools_every_image_once_with_folds_and_age_groups():
    oof, folds = frames()
    rep = cv.report(oof, folds, CLASSES, [{"fold": 0}], n_bootstrap=50, seed=0)
    assert rep["n"] == 24 and rep["groups"] == 12 and rep["folds"] == 3
    assert sum(f["n"] for f in rep["per_fold"].values()) == 24
    assert set(rep["per_age_group"]) == {"0-29", "60+"}
    pred = np.where(oof["p_acne"] >= 0.5, "acne", "tinea")
    assert rep["accuracy"] == pytest.approx(float(np.mean(pred == oof["label"])), abs=1e-6)
    assert rep["ci"]["balanced_accuracy"]["resampled"] == "leakage groups"
    s = rep["fold_spread"]["accuracy"]
    assert s["min"] <= s["mean"] <= s["max"]


def test_report_refuses_an_image_predicted_twice_or_never():
    oof, folds = frames()
    with pytest.raises(ValueError, match="two folds"):
        cv.report(pd.concat([oof, oof.iloc[:1]]), folds, CLASSES, [], n_bootstrap=5, seed=0)
    with pytest.raises(ValueError, match="miss 1 image"):
        cv.report(oof.iloc[1:], folds, CLASSES, [], n_bootstrap=5, seed=0)
