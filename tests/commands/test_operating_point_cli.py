"""`dermai operating-point`: a run's val and test predictions CSVs in, the thresholds chosen on
val and their test table out; bad input is a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from commands.test_compare import CLASSES, predictions
from dermai.cli import main
from dermai.core.operating_point import choose_threshold


def run_folder(tmp_path: Path) -> Path:
    """A folder as `dermai evaluate` leaves reports/evaluate: val and test predictions."""
    folder = tmp_path / "evaluate"
    predictions(folder / "predictions_val.csv", n=150, skill=0.2, seed=1)
    predictions(folder / "predictions_test.csv", n=120, skill=0.2, seed=2)
    return folder


def op(*args: str) -> list[str]:
    return ["operating-point", "--bootstrap", "100", "--seed", "3", *args]


def test_thresholds_come_from_val_and_the_table_from_test(tmp_path, capsys):
    folder = run_folder(tmp_path)
    assert main(op(str(folder), "--target", "mel", "--recall", "0.9", "--recall", "0.7")) == 0
    out = capsys.readouterr().out
    val = pd.read_csv(folder / "predictions_val.csv")
    y = val["label"].map(CLASSES.index).to_numpy()
    p = val[[f"p_{c}" for c in CLASSES]].to_numpy()
    t70, t90 = (choose_threshold(y, p, 1, r) for r in (0.7, 0.9))
    assert f"| argmax | {t70:.4f} | {t90:.4f} |" in out  # ordered by asked recall
    head = (
        "| test, 120 images | default (argmax) | mel recall>=0.7 on val | mel recall>=0.9 on val |"
    )
    assert head in out
    test = pd.read_csv(folder / "predictions_test.csv")
    mel = (test["label"] == "mel").to_numpy()
    flagged = test["p_mel"].to_numpy() >= t90
    row = next(x for x in out.splitlines() if x.startswith("| mel sensitivity"))
    assert row.split("|")[4].strip().startswith(f"{np.mean(flagged[mel]):.3f} [")
    assert "cost against the default (paired)" in out and "NOT a medical diagnostic tool" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "scc", "--recall", "0.8"], "--target scc: not a class"),
        (["--target", "mel", "--recall", "0"], "--recall 0: a recall must be in (0, 1]"),
        (["--target", "mel", "--recall", "1.2"], "--recall 1.2"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, extra, message):
    folder = run_folder(tmp_path)
    assert main(op(str(folder), *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_a_folder_without_val_predictions_is_an_error(tmp_path, capsys):
    folder = run_folder(tmp_path)
    (folder / "predictions_val.csv").unlink()
    assert main(op(str(folder), "--target", "mel", "--recall", "0.8")) == 1
    assert "predictions file not found" in capsys.readouterr().err


def test_no_image_of_the_class_in_val_is_an_error(tmp_path, capsys):
    folder = run_folder(tmp_path)
    val = pd.read_csv(folder / "predictions_val.csv")
    val = val[val["label"] != "mel"]
    val.to_csv(folder / "predictions_val.csv", index=False)
    assert main(op(str(folder), "--target", "mel", "--recall", "0.8")) == 1
    assert "no images of class index 1" in capsys.readouterr().err
