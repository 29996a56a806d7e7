"""The headline metrics: the one small file `dvc metrics show` and `dvc exp show` display.

Short keys and CI strings are deliberate: DVC prints one column per key, and 15 separate numbers
with descriptive names do not fit a 120-column terminal. Every full-precision number (and the
CI bounds as numbers) stays in the stages' own reports; this is the index to them.

Keys (all about the TEST split unless noted):
  acc, bacc, auc      accuracy, balanced accuracy, macro one-vs-rest ROC AUC (calibrated, 3 dp)
  acc_ci, bacc_ci, auc_ci   their bootstrap 95% intervals, "low-high" (2 dp)
  ece                 expected calibration error after temperature scaling
  int8                top-1 agreement of the int8 TFLite model with the Keras model
  leaks               cross-split leakage groups after the split (0 is the goal)
  gate                every data-validation expectation held
  images, rejects     images indexed, files rejected by the index stage
  ext_acc, ext_bacc, ext_auc   the same three on the EXTERNAL split (a held-out site,
                      split.external_source); present only when a site was held out
  cv_acc, cv_bacc, cv_auc (+ _ci)   the same three pooled over every image's out-of-fold
                      prediction (CIs over leakage groups); present only with split.folds on
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

CI_KEYS = {"acc": "accuracy", "bacc": "balanced_accuracy", "auc": "macro_auc"}


def _num(v: Any, digits: int) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), digits)


def _ci(ci: Mapping[str, Any] | None) -> str | None:
    lo, hi = (_num((ci or {}).get(k), 2) for k in ("low", "high"))
    return None if lo is None or hi is None else f"{lo:.2f}-{hi:.2f}"


def headline(
    *,
    test_report: Mapping[str, Any],
    export: Mapping[str, Any],
    leakage: Mapping[str, Any],
    index_summary: Mapping[str, Any],
    gate_passed: bool,
    external_report: Mapping[str, Any] | None = None,
    cv_report: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The headline dict from the evaluate test report, the export metrics, the leakage report
    and the index summary (as the stages write them); plus the held-out site's accuracy,
    balanced accuracy and AUC when evaluate wrote an external report."""
    out: dict[str, Any] = {}
    for key, name in CI_KEYS.items():
        out[key] = _num(test_report.get(name), 3)
        out[f"{key}_ci"] = _ci(test_report.get("ci", {}).get(name))
    out["ece"] = _num(test_report.get("calibration", {}).get("ece_after"), 3)
    out["int8"] = _num(export.get("int8", {}).get("agreement"), 3)
    out["leaks"] = int(leakage["after"]["cross_split_leakage_groups"])
    out["gate"] = bool(gate_passed)
    out["images"] = int(index_summary["indexed"])
    out["rejects"] = int(index_summary["rejected"])
    if external_report is not None:
        for key, name in CI_KEYS.items():
            out[f"ext_{key}"] = _num(external_report.get(name), 3)
    if cv_report is not None and cv_report.get("folds"):
        for key, name in CI_KEYS.items():
            out[f"cv_{key}"] = _num(cv_report.get(name), 3)
            out[f"cv_{key}_ci"] = _ci(cv_report.get("ci", {}).get(name))
    return out
