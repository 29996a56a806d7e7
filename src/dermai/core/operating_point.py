"""An operating point: a threshold on one class's probability, chosen on validation, reported on
test with its cost. Pure numpy.

The default decision is the argmax. A triage user may prefer to flag more of one class (e.g.
melanoma) at the price of more false alarms: flag class c when p_c >= t, else take the most
probable other class. The threshold t is the HIGHEST one whose recall of c on the validation set
reaches the asked recall (so the fewest false alarms that keep it), and it is then applied
unchanged to the test set, where its sensitivity, specificity, precision, the other classes'
recall, accuracy and balanced accuracy are reported beside the argmax decision's, with
bootstrap CIs on the same resamples (so the cost, operating point minus default, is paired).
It is a choice shown to the user, not an improvement: it trades one error for another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermai.core.bootstrap import resample_indices

# Rates reported for the target class and overall, in the order they are printed.
RATES = ("sensitivity", "specificity", "precision", "flagged", "accuracy", "balanced_accuracy")
LABELS = {
    "sensitivity": "sensitivity (recall)",
    "specificity": "specificity",
    "precision": "precision (PPV)",
    "flagged": "share flagged",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
}
COST = ("sensitivity", "specificity", "precision", "accuracy", "balanced_accuracy")
DEFAULT = "default"  # the argmax decision's key in a report


def needed_hits(recall: float, n_pos: int) -> int:
    """The fewest of `n_pos` positives that give recall >= `recall` (exact, no float slack:
    0.8 of 10 is 8, not 9 because 0.8 * 10 = 8.000000000000002)."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    k = max(1, math.ceil(recall * n_pos))
    while k > 1 and (k - 1) / n_pos >= recall:
        k -= 1
    while k / n_pos < recall:
        k += 1
    return k


def choose_threshold(y: np.ndarray, proba: np.ndarray, target: int, recall: float) -> float:
    """The highest t such that the share of class-`target` images with p_target >= t is at
    least `recall`: the k-th highest p_target among them, k = `needed_hits`."""
    y = np.asarray(y)
    scores = np.sort(np.asarray(proba, dtype=np.float64)[y == target, target])[::-1]
    if not len(scores):
        raise ValueError(f"no images of class index {target} to choose a threshold on")
    return float(scores[needed_hits(recall, len(scores)) - 1])


def decide(proba: np.ndarray, target: int, threshold: float | None) -> np.ndarray:
    """Predicted class per image: `target` where p_target >= threshold, else the most probable
    other class; None = the argmax decision."""
    proba = np.asarray(proba, dtype=np.float64)
    if threshold is None:
        return proba.argmax(axis=1)
    others = proba.copy()
    others[:, target] = -np.inf
    return np.where(proba[:, target] >= threshold, target, others.argmax(axis=1))


def rates(cm: np.ndarray, target: int) -> dict[str, np.ndarray]:
    """From confusion matrices (..., k, k; rows = true class): the target's sensitivity,
    specificity, precision and share flagged, accuracy, balanced accuracy (mean recall over the
    classes present, as `metrics.balanced_accuracy`) and each class's recall (`recall/<index>`).
    NaN where undefined (no positive, no negative, nothing flagged)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(axis=(-2, -1))
    support = cm.sum(axis=-1)
    diag = np.diagonal(cm, axis1=-2, axis2=-1)
    flagged = cm[..., :, target].sum(axis=-1)
    tp = cm[..., target, target]
    pos = support[..., target]
    neg = total - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, diag / support, np.nan)
        present = (support > 0).sum(axis=-1)
        out = {
            "sensitivity": np.where(pos > 0, tp / pos, np.nan),
            "specificity": np.where(neg > 0, (neg - (flagged - tp)) / neg, np.nan),
            "precision": np.where(flagged > 0, tp / flagged, np.nan),
            "flagged": np.where(total > 0, flagged / total, np.nan),
            "accuracy": np.where(total > 0, diag.sum(axis=-1) / total, np.nan),
            "balanced_accuracy": np.where(
                present > 0, np.nansum(recall, axis=-1) / np.maximum(present, 1), np.nan
            ),
        }
    for c in range(cm.shape[-1]):
        out[f"recall/{c}"] = recall[..., c]
    return out


def confusions(
    y: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray | None = None
) -> np.ndarray:
    """The k x k confusion matrix of (y, pred), or one per resample row of `idx` (R, n)."""
    codes = np.asarray(y, dtype=np.int64) * k + np.asarray(pred, dtype=np.int64)
    if idx is None:
        return np.bincount(codes, minlength=k * k).reshape(k, k)
    r = len(idx)
    flat = (np.arange(r)[:, None] * (k * k) + codes[idx]).ravel()
    return np.bincount(flat, minlength=r * k * k).reshape(r, k, k)


def _interval(values: np.ndarray, level: float) -> dict[str, float | None]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"low": None, "high": None}
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return {"low": float(lo), "high": float(hi)}


def _point(v: Any) -> float | None:
    return float(v) if np.isfinite(v) else None


def decisions_report(
    y: np.ndarray,
    preds: Mapping[str, np.ndarray],
    classes: Sequence[str],
    target: int,
    *,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """Each decision's rates with percentile CIs, all on the same seeded resamples (those of
    `bootstrap.resample_indices`, as every other interval of the report), and each non-default
    decision's cost against `DEFAULT` (difference and its paired interval)."""
    y = np.asarray(y, dtype=np.int64)
    k, n = len(classes), len(y)
    idx = resample_indices(n, n_bootstrap, seed) if n and n_bootstrap > 0 else None
    names = {f"recall/{c}": f"recall {cls}" for c, cls in enumerate(classes)}
    point, boot = {}, {}
    for name, pred in preds.items():
        point[name] = rates(confusions(y, pred, k), target)
        if idx is not None:
            boot[name] = rates(confusions(y, pred, k, idx), target)

    def block(name: str) -> dict[str, Any]:
        out = {}
        for key, v in point[name].items():
            if key == f"recall/{target}":  # the sensitivity, already reported
                continue
            ci = _interval(boot[name][key], level) if idx is not None else {}
            out[names.get(key, key)] = {"value": _point(v), **ci}
        return out

    report: dict[str, Any] = {
        "n": n,
        "n_resamples": n_bootstrap if idx is not None else 0,
        "level": level,
        "decisions": {name: block(name) for name in preds},
    }
    cost = {}
    for name in preds:
        if name == DEFAULT or DEFAULT not in preds:
            continue
        cost[name] = {
            key: {
                "diff": _point(point[name][key] - point[DEFAULT][key]),
                **(
                    _interval(boot[name][key] - boot[DEFAULT][key], level)
                    if idx is not None
                    else {}
                ),
            }
            for key in COST
        }
    if cost:
        report["cost"] = cost
    return report


def _val_rates(r: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    return {k: _point(float(r[k])) for k in ("sensitivity", "specificity")}


def operating_points(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    target: str,
    recalls: Sequence[float],
    *,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Thresholds on p_`target` chosen on `val` (labels, probabilities) for each asked recall,
    reported on `test` beside the argmax decision."""
    if target not in classes:
        raise ValueError(f"{target!r} is not one of the classes {list(classes)}")
    c = list(classes).index(target)
    (yv, pv), (yt, pt) = val, test
    points = {}
    preds = {DEFAULT: decide(pt, c, None)}
    for r in recalls:
        t = choose_threshold(yv, pv, c, r)
        name = f"recall>={r:g}"
        chosen = rates(confusions(yv, decide(pv, c, t), len(classes)), c)
        points[name] = {"recall_asked": r, "threshold": t, "val": _val_rates(chosen)}
        preds[name] = decide(pt, c, t)
    default_val = rates(confusions(yv, decide(pv, c, None), len(classes)), c)
    return {
        "class": target,
        "classes": list(classes),
        "rule": f"flag {target} when p_{target} >= threshold, else the most probable other class",
        "chosen_on": "val",
        "reported_on": "test",
        "val_default": _val_rates(default_val),
        "thresholds": points,
        "test": decisions_report(yt, preds, classes, c, n_bootstrap=n_bootstrap, seed=seed),
    }


def one_vs_rest(
    y: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    n_bootstrap: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Each class's sensitivity and specificity (one class against the rest) at the argmax
    decision, with percentile CIs on the report's seeded resamples."""
    y = np.asarray(y, dtype=np.int64)
    pred, k = decide(proba, 0, None), len(classes)
    cm = confusions(y, pred, k)
    idx = resample_indices(len(y), n_bootstrap, seed) if len(y) and n_bootstrap > 0 else None
    boot = None if idx is None else confusions(y, pred, k, idx)
    out = {}
    for c, cls in enumerate(classes):
        point = rates(cm, c)
        resampled = None if boot is None else rates(boot, c)
        out[cls] = {
            key: {
                "value": _point(point[key]),
                **({} if resampled is None else _interval(resampled[key], level)),
            }
            for key in ("sensitivity", "specificity")
        }
    return out


def one_vs_rest_markdown(table: Mapping[str, Mapping[str, Any]]) -> str:
    """`one_vs_rest` as a Markdown table, one row per class."""
    lines = [
        _row("class", ["sensitivity (recall) [95% CI]", "specificity [95% CI]"]),
        "|---|---|---|",
    ]
    for cls, v in table.items():
        lines.append(_row(cls, [_cell(v["sensitivity"]), _cell(v["specificity"])]))
    return "\n".join(lines)


def _cell(v: Mapping[str, Any], signed: bool = False) -> str:
    value = v.get("value", v.get("diff"))
    if value is None:
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if v.get("low") is None:
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(v['low'])}, {fmt.format(v['high'])}]"


def _row(label: str, cells: Sequence[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def markdown(rep: Mapping[str, Any]) -> str:
    """`operating_points`' report as Markdown: thresholds, then each decision's test rates with
    95% CIs, then the cost against the argmax decision (paired)."""
    target, test, thr = rep["class"], rep["test"], rep["thresholds"]
    # a fixed order (the report may come back from JSON with its keys sorted): the default,
    # then by asked recall; the target's rates, then the other classes' recall in class order
    names = [DEFAULT, *sorted(thr, key=lambda n: thr[n]["recall_asked"])]
    rows = [*RATES, *(f"recall {c}" for c in rep["classes"] if c != target)]
    val = {n: rep["val_default"] if n == DEFAULT else thr[n]["val"] for n in names}
    heads = ["default (argmax)" if n == DEFAULT else f"{target} {n} on val" for n in names]
    lines = [
        _row(f"test, {test['n']} images", heads),
        "|" + "---|" * (len(names) + 1),
        _row(
            f"threshold on p_{target} (chosen on val)",
            ["argmax" if n == DEFAULT else f"{thr[n]['threshold']:.4f}" for n in names],
        ),
        _row(
            f"val {target} sensitivity / specificity",
            [" / ".join(_cell({"value": v}) for v in val[n].values()) for n in names],
        ),
    ]
    for key in rows:
        label = f"{target} {LABELS[key]}" if key in RATES[:4] else LABELS.get(key, key)
        lines.append(_row(label, [_cell(test["decisions"][n][key]) for n in names]))
    cost = test.get("cost", {})
    if cost:
        lines += [
            "",
            _row("cost against the default (paired)", [f"{target} {n}" for n in names[1:]]),
            "|" + "---|" * len(names),
        ]
        for key in COST:
            label = f"{target} {LABELS[key]}" if key in RATES[:4] else LABELS[key]
            lines.append(_row(label, [_cell(cost[n][key], signed=True) for n in names[1:]]))
    level = round(100 * test["level"])
    lines += [
        "",
        f"Intervals: {level}% bootstrap percentile, {test['n_resamples']} resamples of the test "
        "images, the same resamples for every column (so the cost is paired).",
    ]
    return "\n".join(lines)
