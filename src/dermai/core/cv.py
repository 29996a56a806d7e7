"""The cross-validation report: every image's out-of-fold prediction, pooled. Pure.

Each image was predicted once, by the model of the fold that held it out (whose training never
saw its leakage group), so the pooled metrics cover all N images instead of a 10% test split. The
confidence intervals resample whole leakage groups (patients, lesions, duplicate clusters): photos
of one patient are not independent. The fold spread shows how much a single split could move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dermai.core import evaluation
from dermai.core.bootstrap import bootstrap_cis

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")


def pooled(
    oof: pd.DataFrame, folds: pd.DataFrame, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(labels, probabilities, per-image rows) of the out-of-fold predictions joined with
    folds.csv; a ValueError when an image is predicted twice or not at all."""
    if oof["image_id"].duplicated().any():
        raise ValueError("an image is predicted by two folds")
    missing = sorted(set(folds["image_id"]) - set(oof["image_id"]))
    if missing or len(oof) != len(folds):
        raise ValueError(
            f"out-of-fold predictions miss {len(missing)} image(s), e.g. {missing[:3]}"
        )
    rows = folds.merge(oof, on="image_id", how="left", validate="one_to_one")
    rows = rows.sort_values("image_id", kind="stable").reset_index(drop=True)
    y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    proba = rows[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)
    return y.astype(np.int64), proba, rows


def spread(per_fold: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, SD, min and max of each headline metric over the folds."""
    out = {}
    for m in HEADLINE:
        v = np.asarray([f[m] for f in per_fold.values()], dtype=float)
        v = v[np.isfinite(v)]
        out[m] = {
            "mean": float(v.mean()) if len(v) else float("nan"),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
            "min": float(v.min()) if len(v) else float("nan"),
            "max": float(v.max()) if len(v) else float("nan"),
        }
    return out


def report(
    oof: pd.DataFrame,
    folds: pd.DataFrame,
    classes: Sequence[str],
    fold_info: Sequence[Mapping[str, Any]],
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The `cv` report: pooled headline metrics with group-bootstrap 95% CIs, per class, per age
    group, per fold and the fold spread, and what each fold chose on its inner validation set."""
    y, proba, rows = pooled(oof, folds, classes)
    groups = rows["leakage_group"].astype(str).tolist()
    fns = evaluation._ci_fns(len(classes))
    cis = bootstrap_cis(fns, y, proba, n_resamples=n_bootstrap, seed=seed, groups=groups)
    fold_of = rows["fold"].astype(int).to_numpy()
    per_fold = {
        str(f): {
            "n": int((fold_of == f).sum()),
            **evaluation.headline(y[fold_of == f], proba[fold_of == f]),
        }
        for f in sorted(set(fold_of.tolist()))
    }
    out = {
        "folds": len(per_fold),
        "n": len(y),
        "groups": len(set(groups)),
        **evaluation.headline(y, proba),
        "ci": {
            k: {
                "low": c.low,
                "high": c.high,
                "level": c.level,
                "n_resamples": c.n_resamples,
                "resampled": "leakage groups",
            }
            for k, c in cis.items()
        },
        "per_class": evaluation.per_class(y, proba, classes),
        "per_age_group": evaluation.subgroup_report(
            y, proba, {"age_group": rows["age_group"].astype(str).tolist()}
        )["age_group"],
        "per_fold": per_fold,
        "fold_spread": spread(per_fold),
        "fold_choices": [dict(f) for f in fold_info],
    }
    return evaluation.json_safe(out)
