"""Render `reports/model_card.md` from the run's own artefacts. Pure: dicts in, Markdown out.

Every number in the card is read from a file the pipeline wrote (split summary, leakage report,
evaluation reports, calibration), so the card cannot drift from the model it describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SPLITS = ("train", "val", "test")
ECE_GOAL = 0.05


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _with_ci(rep: Mapping[str, Any], key: str) -> str:
    ci = rep.get("ci", {}).get(key)
    if ci is None:
        return _f(rep.get(key))
    return f"{_f(rep.get(key))} [{_f(ci['low'])}, {_f(ci['high'])}]"


def data_table(split_rows: Sequence[Mapping[str, Any]]) -> str:
    """Counts per condition x age group (rows) and split (columns)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in split_rows:
        key = (str(r["condition"]), str(r["age_group"]))
        counts.setdefault(key, {})[str(r["split"])] = int(r["count"])
    rows = []
    totals = dict.fromkeys(SPLITS, 0)
    for (cond, age), by in sorted(counts.items()):
        vals = [by.get(s, 0) for s in SPLITS]
        for s, v in zip(SPLITS, vals, strict=True):
            totals[s] += v
        rows.append([cond, age, *vals, sum(vals)])
    rows.append(["**all**", "", *[totals[s] for s in SPLITS], sum(totals.values())])
    return _table(["condition", "age group", *SPLITS, "total"], rows)


def leakage_table(leakage: Mapping[str, Any]) -> str:
    before, after = leakage.get("before", {}), leakage.get("after", {})
    keys = sorted(k for k in set(before) | set(after)
                  if isinstance(before.get(k, after.get(k)), int | float))
    rows = [[k.replace("_", " "), before.get(k, "n/a"), after.get(k, "n/a")] for k in keys]
    for s in SPLITS:
        rows.append([f"{s} size", before.get("sizes", {}).get(s, "n/a"),
                     after.get("sizes", {}).get(s, "n/a")])
    return _table([
        "measure", f"before ({before.get('method', 'naive')})",
        f"after ({after.get('method', leakage.get('policy', ''))})"], rows)


def metrics_table(reports: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, rep in reports.items():
        rows.append([name, rep["n"], _with_ci(rep, "accuracy"),
                     _with_ci(rep, "balanced_accuracy"), _f(rep["macro_f1"]),
                     _with_ci(rep, "macro_auc")])
    return _table(["set", "n", "accuracy [95% CI]", "balanced accuracy [95% CI]", "macro F1",
                   "macro AUC [95% CI]"], rows)


def per_class_table(rep: Mapping[str, Any]) -> str:
    rows = [[c, v["support"], _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), _f(v["auc"])]
            for c, v in rep["per_class"].items()]
    return _table(["class", "support", "precision", "recall", "F1", "AUC (OvR)"], rows)


def subgroup_tables(rep: Mapping[str, Any]) -> str:
    parts = []
    for col, groups in rep["subgroups"].items():
        rows = [[g, v["n"], _f(v["accuracy"]), _f(v["balanced_accuracy"]), _f(v["macro_f1"]),
                 _f(v["macro_auc"])] for g, v in groups.items()]
        parts.append(f"By {col.replace('_', ' ')}:\n\n" + _table(
            [col, "n", "accuracy", "balanced accuracy", "macro F1", "macro AUC"], rows))
    return "\n\n".join(parts) if parts else "No subgroup columns."


def render(*, disclaimer: str, model: Mapping[str, Any], split_rows: Sequence[Mapping[str, Any]],
           sources: Mapping[str, int], leakage: Mapping[str, Any],
           reports: Mapping[str, Mapping[str, Any]], calibration: Mapping[str, Any],
           rejected: int | None = None) -> str:
    """The model card. `reports` maps set name (val, test) to `core.evaluation.report`."""
    test = reports.get("test") or next(iter(reports.values()))
    tcal = test["calibration"]
    classes = ", ".join(model.get("classes", []))
    prm = model.get("params", {})
    mp, tp = prm.get("model", {}), prm.get("train", {})
    goal = tcal["ece_after"] is not None and tcal["ece_after"] <= ECE_GOAL
    src = ", ".join(f"{k} ({v} images)" for k, v in sorted(sources.items())) or "n/a"
    shape = model.get("input_shape", ["?", "?", 3])
    rejected_line = (f" {rejected} files were rejected as unreadable at indexing."
                     if rejected else "")
    return f"""# DermAI model card

> **{disclaimer}**

## Model

- Task: classify a dermoscopic image into one of {len(model.get('classes', []))} conditions:
  {classes}.
- Architecture: {mp.get('backbone', 'n/a')} backbone (weights: {mp.get('weights', 'n/a')}),
  dropout {mp.get('dropout', 'n/a')} and a softmax head; input {shape[0]}x{shape[1]} RGB.
- Training: two-phase fine-tuning (head {tp.get('head_epochs', 'n/a')} epochs, then the top
  {tp.get('unfreeze_blocks', 'n/a')} stages {tp.get('finetune_epochs', 'n/a')} epochs),
  imbalance handling `{tp.get('imbalance', 'n/a')}`; the epoch with the best validation balanced
  accuracy is kept (best epoch: {model.get('best_epoch', 'n/a')}).
- Calibration: temperature scaling, T = {_f(calibration.get('temperature'), 4)} fitted on the
  validation set (saved with the model as `calibration.json`).

## Intended use

Education and research: studying a reproducible, leakage-safe skin-lesion classification
pipeline and its failure modes. **Not** for diagnosis, triage, screening or any clinical
decision, and not for use by patients. Outputs are probabilities over a closed set of
{len(model.get('classes', []))} conditions; an image of anything else still receives one of them.

## Data

Sources: {src}.{rejected_line} Images are grouped so that exact and near-duplicate images (and
images of the same lesion) never cross splits. Counts per split, condition and age group:

{data_table(split_rows)}

### Leakage check

Cross-split duplicates before (naive per-image split) and after the leakage-safe split:

{leakage_table(leakage)}

## Performance

Headline metrics (calibrated probabilities; 95% bootstrap percentile intervals,
{test['ci'].get('accuracy', {}).get('n_resamples', 'n/a')} resamples). Validation was used for
model selection and to fit the temperature, so the **test** row is the one to quote.

{metrics_table(reports)}

### Per class (test)

{per_class_table(test)}

### Subgroups (test)

Subgroups are small; treat differences as hints to investigate, not findings.

{subgroup_tables(test)}

## Calibration

Expected calibration error (top-label, {tcal['bins']} equal-width bins) on the test set:
{_f(tcal['ece_before'], 4)} before and {_f(tcal['ece_after'], 4)} after temperature scaling
(T = {_f(tcal['temperature'], 4)}); test NLL {_f(tcal['nll_before'], 4)} ->
{_f(tcal['nll_after'], 4)}. Goal ECE <= {ECE_GOAL}: {'met' if goal else 'NOT met'}.

## Limitations

- Trained and tested on one data distribution; performance on other cameras, clinics,
  populations or non-dermoscopic photos is unknown (use `dermai evaluate-external`).
- Skin tone / Fitzpatrick type is not recorded, so performance across skin tones is unmeasured.
- Classes and subgroups are imbalanced; rare classes have wide intervals.
- Age and source subgroup metrics are shown without intervals and on few images.
- Grad-CAM maps show where the model looked, not a medical rationale.
- Calibration holds on data like the validation set only; it does not fix distribution shift.

---

{disclaimer}
"""
