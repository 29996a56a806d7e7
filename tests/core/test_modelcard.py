"""The model card is rendered from the run's numbers and always carries the disclaimer."""

from __future__ import annotations

import numpy as np

from dermai import DISCLAIMER
from dermai.core.evaluation import report
from dermai.core.modelcard import render


def two_class_report(seed: int, groups: dict | None = None, n: int = 40) -> dict:
    """A small bcc/mel evaluation report (noisy logits with signal), as `evaluate` builds one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return report(
        y,
        rng.normal(0, 1, (n, 2)) + np.eye(2)[y],
        ["bcc", "mel"],
        temperature=1.0,
        groups=groups or {},
        n_bootstrap=20,
    )


def test_card_contains_data_leakage_metrics_calibration_and_disclaimer():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    logits = rng.normal(0, 1, (50, 2)) + np.eye(2)[y] * 2
    rep = report(
        y,
        logits,
        ["bcc", "mel"],
        temperature=1.3,
        groups={"age_group": ["0-29"] * 25 + ["60+"] * 25},
        n_bootstrap=50,
    )
    card = render(
        disclaimer=DISCLAIMER,
        model={
            "classes": ["bcc", "mel"],
            "input_shape": [24, 32, 3],
            "params": {"model": {"backbone": "efficientnet_lite0"}},
        },
        split_rows=[
            {"split": "train", "condition": "bcc", "age_group": "0-29", "count": "7"},
            {"split": "test", "condition": "mel", "age_group": "60+", "count": "3"},
        ],
        sources={"clinic_a": 10},
        rejected=2,
        leakage={
            "before": {"cross_split_exact_pairs": 4, "method": "naive"},
            "after": {"cross_split_exact_pairs": 0, "method": "policy=group"},
        },
        reports={"val": rep, "test": rep},
        calibration={"temperature": 1.3},
    )
    assert card.count(DISCLAIMER) == 2
    assert "| bcc | 0-29 | 7 | 0 | 0 | 7 |" in card
    assert "| **all** |  | 7 | 0 | 3 | 10 |" in card
    assert "| cross split exact pairs | 4 | 0 |" in card
    assert f"{rep['accuracy']:.3f} [{rep['ci']['accuracy']['low']:.3f}" in card
    assert "T = 1.3000" in card and "clinic_a (10 images)" in card and "0-29" in card
    assert "Intended use" in card and "Limitations" in card


def test_the_sample_card_says_synthetic_wherever_it_names_data_and_summary_has_headlines():
    from dermai.core.modelcard import dataset_of, summary

    rep = two_class_report(1)
    model = {
        "classes": ["bcc", "mel"],
        "input_shape": [24, 32, 3],
        "params": {"index": {"raw_root": "data/raw/sample"}},
    }
    card = render(
        disclaimer=DISCLAIMER,
        model=model,
        split_rows=[],
        sources={"clinic_a": 4},
        leakage={},
        reports={"test": rep},
        calibration={"temperature": 1.0},
    )
    for line in card.splitlines():
        if line.startswith(("- Training data", "- Task", "Data:", "Sources")):
            assert "synthetic" in line.lower(), line
    assert "trained on SYNTHETIC data" in card and "SYNTHETIC images only" in card
    s = summary(model, {"test": rep})
    assert s["data"]["synthetic"] is True and s["classes"] == ["bcc", "mel"]
    assert s["metrics"]["n"] == 40 and len(s["metrics"]["accuracy_ci"]) == 2
    ham = dataset_of({"index": {"raw_root": "../shared/data/ham10000"}})
    assert ham["name"] == "HAM10000" and "dermoscopic" in ham["image_kind"]
    assert not ham["synthetic"]
    assert (
        "synthetic"
        not in render(
            disclaimer=DISCLAIMER,
            model={**model, "params": {"index": {"raw_root": "x/ham10000"}}},
            split_rows=[],
            sources={},
            leakage={},
            reports={"test": rep},
            calibration={"temperature": 1.0},
        ).lower()
    )


def test_a_held_out_site_gets_its_own_section_column_and_size_only_when_present():
    rep = two_class_report(2, {"source": ["rosendahl"] * 40})
    args = {
        "disclaimer": DISCLAIMER,
        "model": {"classes": ["bcc", "mel"], "params": {}},
        "sources": {},
        "calibration": {"temperature": 1.0},
    }
    rows = [{"split": "train", "condition": "bcc", "age_group": "0-29", "count": "7"}]
    plain = render(
        **args,
        split_rows=rows,
        leakage={"after": {"sizes": {"train": 7, "val": 0, "test": 0}}},
        reports={"val": rep, "test": rep},
    )
    assert "| external" not in plain and "Held-out site" not in plain
    card = render(
        **args,
        split_rows=[
            *rows,
            {"split": "external", "condition": "mel", "age_group": "60+", "count": "4"},
        ],
        leakage={
            "after": {"sizes": {"train": 7, "val": 0, "test": 0, "external": 4}},
            "external": {"sources": ["rosendahl"], "images_pulled_by_groups": 2},
        },
        reports={"val": rep, "test": rep, "external": rep},
    )
    assert "| condition | age group | train | val | test | external | total |" in card
    assert "| **all** |  | 7 | 0 | 0 | 4 | 11 |" in card and "| external size | n/a | 4 |" in card
    assert "### Held-out site (external: rosendahl)" in card
    assert "2 image(s) of other sources" in card and "By source:" in card
    assert card.count(f"| external | {rep['n']} |") == 2  # Performance table and its section


def test_colour_constancy_is_on_the_card_only_when_the_model_was_trained_with_it():
    rep = two_class_report(3)
    args = {
        "disclaimer": DISCLAIMER,
        "sources": {},
        "calibration": {"temperature": 1.0},
        "split_rows": [{"split": "train", "condition": "bcc", "age_group": "0-29", "count": "7"}],
        "leakage": {"after": {"sizes": {"train": 7, "val": 0, "test": 0}}},
        "reports": {"val": rep, "test": rep},
    }
    model = {"classes": ["bcc", "mel"], "params": {}, "input_shape": [150, 200, 3]}
    plain = render(**args, model=model)
    assert render(**args, model={**model, "colour_constancy": "none"}) == plain
    assert "Colour constancy" not in plain
    on = render(**args, model={**model, "colour_constancy": 6.0})
    assert "Colour constancy: Shades of Grey (Minkowski p = 6)" in on
    assert "input 150x200 RGB.\n- Colour constancy" in on
