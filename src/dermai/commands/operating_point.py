"""Operating points of one evaluated model, from its saved predictions: thresholds on one class's
probability chosen on VALIDATION for each asked recall, reported on TEST beside the default
(argmax) decision with bootstrap 95% intervals and the paired cost (`core.operating_point`, the
numbers `evaluate.operating_point` writes into the model card).

RUN is a folder holding `predictions_val.csv` and `predictions_test.csv` (what `dermai
evaluate` writes into reports/evaluate/), or a DVC experiment or Git revision whose
reports/evaluate/ holds them. Prints a Markdown table. An operating point is a choice for
triage use shown with its cost, not an improvement. Research prototype, not a diagnostic tool.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dermai import DISCLAIMER
from dermai.commands.compare import (
    DEFAULT_PREDICTIONS,
    Predictions,
    add_resampling_arguments,
    load,
    resampling,
)
from dermai.core.operating_point import markdown, operating_points
from dermai.errors import DermaiError

log = logging.getLogger(__name__)

FOLDER = str(Path(DEFAULT_PREDICTIONS).parent)  # reports/evaluate
SPLITS = ("val", "test")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        nargs="?",
        default=FOLDER,
        help=f"folder with predictions_val.csv and predictions_test.csv, or an experiment or "
        f"Git revision (default: {FOLDER})",
    )
    p.add_argument("--target", required=True, metavar="CLASS", help="the class to flag, e.g. mel")
    p.add_argument(
        "--recall",
        type=float,
        action="append",
        required=True,
        help="the recall of CLASS to keep on val (repeatable), e.g. --recall 0.8 --recall 0.9",
    )
    add_resampling_arguments(p)


def read(run: str, repo: str) -> dict[str, Predictions]:
    """The val and test predictions of `run` (a folder, else an experiment or revision)."""
    folder = Path(run)
    if folder.is_dir():
        return {s: load(str(folder / f"predictions_{s}.csv"), "", repo) for s in SPLITS}
    return {s: load(run, f"{FOLDER}/predictions_{s}.csv", repo) for s in SPLITS}


def labels(p: Predictions) -> np.ndarray:
    index = {c: k for k, c in enumerate(p.classes)}
    return np.array([index[v] for v in p.labels], dtype=np.int64)


def run(args: argparse.Namespace) -> None:
    n_resamples, seed = resampling(args)
    bad = [r for r in args.recall if not 0.0 < r <= 1.0]
    if bad:
        raise DermaiError(f"--recall {bad[0]:g}: a recall must be in (0, 1]")
    pred = read(args.run, args.repo)
    val, test = pred["val"], pred["test"]
    if val.classes != test.classes:
        raise DermaiError(f"{val.name} and {test.name} have different classes")
    if args.target not in val.classes:
        raise DermaiError(f"--target {args.target}: not a class of {val.name} ({val.classes})")
    log.info(
        "thresholds on p_%s chosen on %s, reported on %s (%d resamples)",
        args.target,
        val.name,
        test.name,
        n_resamples,
    )
    try:
        rep = operating_points(
            (labels(val), val.proba),
            (labels(test), test.proba),
            val.classes,
            args.target,
            args.recall,
            n_bootstrap=n_resamples,
            seed=seed,
        )
    except ValueError as exc:
        raise DermaiError(f"{val.name}: {exc}") from None
    print(f"Operating points for {args.target}: {rep['rule']}; chosen on val, reported on test.\n")
    print(markdown(rep))
    print(
        "\nA choice for triage use shown with its cost, not an improvement. These intervals "
        "cover test-image sampling only, not run-to-run training variation.\n" + DISCLAIMER
    )
