"""Publishing an evaluation: dvclive metrics and plots, predictions CSV, error gallery.

Shared by `dermai evaluate` (val/test TFRecords) and `dermai evaluate-external` (any labelled
folder) so both publish the same numbers in the same layout. The numbers themselves come from
`core.evaluation.report`.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermai import DISCLAIMER
from dermai.core import calibration, plotdata
from dermai.core import operating_point as op_mod
from dermai.core.evaluation import HEADLINE, json_safe, most_confident_mistakes, report
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, atomic_path, write_csv, write_json
from dermai.params import OperatingPointParams, Params
from dermai.runtime.gradcam import overlay

if TYPE_CHECKING:
    from dvclive import Live

    from dermai.runtime.gradcam import GradCam

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    n_bootstrap: int
    ece_bins: int
    seed: int
    errors_per_class: int


def settings_from(prm: Params) -> EvalSettings:
    """The `evaluate` section (and base seed) as report settings."""
    ev = prm.evaluate
    return EvalSettings(
        n_bootstrap=ev.bootstrap,
        ece_bins=ev.ece_bins,
        seed=prm.base.seed,
        errors_per_class=ev.errors_per_class,
    )


def live_session(folder: str | Path) -> Live:
    """A dvclive session that writes only metrics.json and plots/ (no dvc.yaml, no exp, no
    report), so the stage's outputs are its own and deterministic."""
    from dvclive import Live

    return Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)


def _set_in(d: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _scalar(live: Live, name: str, value: float | None) -> None:
    if value is None:  # undefined (e.g. AUC without both outcomes): null, not the string "nan"
        _set_in(live.summary, name.split("/"), None)
    else:
        live.log_metric(name, value, plot=False)


def log_report(
    live: Live,
    prefix: str,
    rep: Mapping[str, Any],
    y: np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str],
) -> None:
    """Scalars via log_metric, structured metrics nested in the summary, and the plots:
    confusion matrix, one-vs-rest ROC and PR per class, reliability before/after T."""
    for k in HEADLINE:
        _scalar(live, f"{prefix}/{k}", rep[k])
    _scalar(live, f"{prefix}/n", rep["n"])
    cal = rep["calibration"]
    for k in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after"):
        _scalar(live, f"{prefix}/calibration/{k}", cal[k])
    live.summary.setdefault(prefix, {})
    live.summary[prefix]["ci"] = {
        k: {"low": v["low"], "high": v["high"]} for k, v in rep["ci"].items()
    }
    live.summary[prefix]["per_class"] = rep["per_class"]
    live.summary[prefix]["subgroups"] = rep["subgroups"]

    y = np.asarray(y)
    proba = calibration.probabilities(logits, cal["temperature"])
    # Long-format plot data, one file per chart with the class in a field, drawn by the
    # templates in .dvc/plots/ (dvc.yaml `plots:`); x/y only label the data for dvclive.
    for kind, rows, x, y_field in (
        (
            "confusion",
            plotdata.confusion_rows(rep["confusion_matrix"]["matrix"], classes),
            "actual",
            "predicted",
        ),
        ("roc", plotdata.roc_rows(y, proba, classes), "fpr", "tpr"),
        ("precision_recall", plotdata.pr_rows(y, proba, classes), "recall", "precision"),
        ("reliability", plotdata.reliability_rows(cal), "confidence", "accuracy"),
    ):
        live.log_plot(f"{prefix}/{kind}", rows, x=x, y=y_field, template=None)


def fixed(v: np.ndarray) -> list[str]:
    """Probabilities as the predictions CSV writes them: "%.6f" text."""
    return [f"{x:.6f}" for x in np.asarray(v, dtype=np.float64)]


def as_written(proba: np.ndarray) -> np.ndarray:
    """The probabilities as read back from the predictions CSV, so a number computed here is
    the number `dermai operating-point` computes from the CSV."""
    proba = np.asarray(proba, dtype=np.float64)
    return np.array([float(t) for t in fixed(proba.ravel())]).reshape(proba.shape)


def write_predictions(
    path: Path, ids: Sequence[str], y: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> None:
    """Per image: id, true label, top-1, confidence and the calibrated probability per class
    (`p_<class>`, what `dermai compare` reads). Fixed "%.6f" text, so equal probabilities give
    equal bytes and no value turns into 1e-06 notation."""
    import pandas as pd

    pred = proba.argmax(axis=1)

    df = pd.DataFrame(
        {
            "image_id": list(ids),
            "label": [classes[i] for i in y],
            "predicted": [classes[i] for i in pred],
            "confidence": fixed(proba.max(axis=1)),
        }
    )
    for c, cls in enumerate(classes):
        df[f"p_{cls}"] = fixed(proba[:, c])
    write_csv(path, df)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def error_gallery(
    out_dir: Path,
    *,
    title: str,
    classes: Sequence[str],
    y: np.ndarray,
    proba: np.ndarray,
    ids: Sequence[str],
    image_of: Callable[[int], np.ndarray],
    cam: GradCam | None,
    per_class_k: int,
) -> Path:
    """Per true class, the most confident mistakes as PNG tiles (image | Grad-CAM of the
    predicted class) on one HTML page. Returns the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(out_dir.glob("*.png")):
        stale.unlink()
    sel = most_confident_mistakes(y, proba, len(classes), per_class_k)
    pred = proba.argmax(axis=1)
    chosen = [i for c in range(len(classes)) for i in sel[c]]
    images = {i: np.asarray(image_of(i), dtype=np.uint8) for i in chosen}
    heats: dict[int, np.ndarray] = {}
    if cam is not None and chosen:
        for start in range(0, len(chosen), 16):
            part = chosen[start : start + 16]
            maps = cam.heatmaps(
                np.stack([images[i] for i in part]).astype(np.float32), [int(pred[i]) for i in part]
            )
            heats.update(zip(part, maps, strict=True))
    sections = []
    for c, cls in enumerate(classes):
        figures = []
        for rank, i in enumerate(sel[c]):
            img = Image.fromarray(images[i])
            tiles = [img] + ([overlay(img, heats[i])] if i in heats else [])
            tile = Image.new(
                "RGB",
                (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), img.height),
                (255, 255, 255),
            )
            x = 0
            for t in tiles:
                tile.paste(t, (x, 0))
                x += t.width + 4
            fname = f"{_safe(cls)}_{rank:02d}_{_safe(str(ids[i]))}.png"
            with atomic_path(out_dir / fname) as tmp:
                tile.save(tmp, format="PNG", optimize=False)
            cap = (
                f"{html.escape(str(ids[i]))}<br>true <b>{html.escape(cls)}</b> "
                f"(p={proba[i, c]:.3f}), predicted <b>{html.escape(classes[pred[i]])}</b> "
                f"(p={proba[i, pred[i]]:.3f})"
            )
            figures.append(
                f'<figure><img src="{html.escape(fname)}" alt="{html.escape(fname)}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
        n_wrong = int(((y == c) & (pred != c)).sum())
        body = "\n".join(figures) if figures else "<p>No mistakes.</p>"
        sections.append(
            f"<h2>{html.escape(cls)}: {n_wrong} of {int((y == c).sum())} "
            f'misclassified</h2>\n<div class="grid">\n{body}\n</div>'
        )
    cam_note = (
        "Right tile: Grad-CAM of the predicted class (where the model looked, not why)."
        if cam is not None
        else "Grad-CAM is not available for this model format."
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;font-size:12px;max-width:420px}} .disclaimer{{background:#fee;padding:.6em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
<p>Per true class, the misclassified images with the highest predicted-class confidence
(calibrated). {cam_note}</p>
{chr(10).join(sections)}
</body></html>
"""
    index = out_dir / "index.html"
    with atomic_open(index, "w", encoding="utf-8") as fh:
        fh.write(page)
    return index


def publish(
    name: str,
    *,
    y: np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str],
    temperature: float,
    ids: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    live: Live,
    out_dir: Path,
    settings: EvalSettings,
    image_of: Callable[[int], np.ndarray] | None = None,
    cam: GradCam | None = None,
    errors_dir: Path | None = None,
) -> dict[str, Any]:
    """Compute, log and write everything for one labelled set; returns the report dict."""
    y = np.asarray(y, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    rep = report(
        y,
        logits,
        classes,
        temperature=temperature,
        groups=groups,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        bins=settings.ece_bins,
    )
    log_report(live, name, rep, y, logits, classes)
    proba = calibration.probabilities(logits, temperature)
    write_predictions(out_dir / f"predictions_{name}.csv", ids, y, proba, classes)
    write_json(out_dir / f"report_{name}.json", rep)
    if image_of is not None and errors_dir is not None and settings.errors_per_class > 0:
        page = error_gallery(
            errors_dir,
            title=f"DermAI most confident mistakes ({name})",
            classes=classes,
            y=y,
            proba=proba,
            ids=ids,
            image_of=image_of,
            cam=cam,
            per_class_k=settings.errors_per_class,
        )
        log.info("error gallery: %s", page)

    def f(v: float | None) -> float:
        return float("nan") if v is None else float(v)

    log.info(
        "%s: n=%d acc %.4f [%.4f, %.4f] bal acc %.4f macro F1 %.4f macro AUC %.4f; "
        "ECE %.4f -> %.4f (T=%.3f)",
        name,
        rep["n"],
        f(rep["accuracy"]),
        f(rep["ci"]["accuracy"]["low"]),
        f(rep["ci"]["accuracy"]["high"]),
        f(rep["balanced_accuracy"]),
        f(rep["macro_f1"]),
        f(rep["macro_auc"]),
        f(rep["calibration"]["ece_before"]),
        f(rep["calibration"]["ece_after"]),
        temperature,
    )
    return rep


def decision_report(
    data: Mapping[str, Mapping[str, Any]],
    temperature: float,
    classes: Sequence[str],
    settings: EvalSettings,
    op: OperatingPointParams,
    out_dir: Path,
) -> dict[str, Any]:
    """The model card's decision section from the val and test `y` and `logits`: each class's
    test sensitivity and specificity at the argmax; with `evaluate.operating_point` on, the
    threshold chosen on val and its test report beside the argmax's, also written to
    `operating_point.json` (nothing is written when off). Probabilities as the CSVs hold them."""

    def proba(logits: np.ndarray) -> np.ndarray:
        return as_written(calibration.probabilities(np.asarray(logits, np.float64), temperature))

    boot = {"n_bootstrap": settings.n_bootstrap, "seed": settings.seed}
    (yv, lv), (yt, lt) = ((data[s]["y"], data[s]["logits"]) for s in ("val", "test"))
    out: dict[str, Any] = {
        "one_vs_rest": json_safe(op_mod.one_vs_rest(yt, proba(lt), classes, **boot))
    }
    if not op.target:
        return out
    if op.target not in classes:
        raise DermaiError(
            f"evaluate.operating_point.target={op.target!r} is not a class of this model "
            f"({', '.join(classes)})"
        )
    try:
        rep = op_mod.operating_points(
            (yv, proba(lv)), (yt, proba(lt)), classes, op.target, [op.recall], **boot
        )
    except ValueError as exc:  # no image of the class in val
        raise DermaiError(f"evaluate.operating_point: {exc} in val") from None
    out["operating_point"] = json_safe(rep)
    write_json(out_dir / "operating_point.json", out["operating_point"])
    point = next(iter(rep["thresholds"].values()))
    log.info(
        "operating point: %s flagged at p >= %.4f (val recall %.3f, asked %g); test in %s",
        op.target,
        point["threshold"],
        point["val"]["sensitivity"],
        op.recall,
        out_dir / "operating_point.json",
    )
    return out
