"""The headline metrics: the right fields from each stage's report, rounded, NaN -> null."""

from __future__ import annotations

from dermai.core.headline import headline

REPORT = {
    "accuracy": 0.754991,
    "balanced_accuracy": 0.66612,
    "macro_auc": 0.950449,
    "ci": {
        "accuracy": {"low": 0.71349, "high": 0.767},
        "balanced_accuracy": {"low": 0.6204, "high": 0.7109},
        "macro_auc": {"low": None, "high": None},
    },
    "calibration": {"ece_before": 0.08, "ece_after": 0.03149},
}
EXPORT = {"int8": {"agreement": 0.99101}, "float32": {"agreement": 1.0}}
LEAKAGE = {"before": {"cross_split_leakage_groups": 8}, "after": {"cross_split_leakage_groups": 0}}
INDEX = {"indexed": 10015, "rejected": 2, "files_found": 10017}


def test_headline_fields_and_rounding():
    out = headline(
        test_report=REPORT, export=EXPORT, leakage=LEAKAGE, index_summary=INDEX, gate_passed=True
    )
    assert out == {
        "acc": 0.755,
        "acc_ci": "0.71-0.77",
        "bacc": 0.666,
        "bacc_ci": "0.62-0.71",
        "auc": 0.95,
        "auc_ci": None,
        "ece": 0.031,
        "int8": 0.991,
        "leaks": 0,
        "gate": True,
        "images": 10015,
        "rejects": 2,
    }


def test_leakage_is_the_after_split_count_and_missing_numbers_are_null():
    out = headline(
        test_report={"accuracy": float("nan")},
        export={},
        leakage={"after": {"cross_split_leakage_groups": 3}},
        index_summary=INDEX,
        gate_passed=False,
    )
    assert out["leaks"] == 3 and out["gate"] is False
    assert out["acc"] is None and out["acc_ci"] is None and out["int8"] is None


def test_cv_keys_only_when_folds_are_on():
    kw = dict(test_report=REPORT, export=EXPORT, leakage=LEAKAGE, index_summary=INDEX)
    plain = headline(**kw, gate_passed=True)
    assert headline(**kw, gate_passed=True, cv_report={"folds": 0, "note": "off"}) == plain
    out = headline(**kw, gate_passed=True, cv_report={"folds": 5, **REPORT})
    assert {k: v for k, v in out.items() if k.startswith("cv_")} == {
        "cv_acc": 0.755,
        "cv_acc_ci": "0.71-0.77",
        "cv_bacc": 0.666,
        "cv_bacc_ci": "0.62-0.71",
        "cv_auc": 0.95,
        "cv_auc_ci": None,
    }
