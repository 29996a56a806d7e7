"""`dermai compare`: prediction files and Git revisions in, paired CIs and a verdict out; bad
input is a one-line error naming what was given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]


def predictions(
    path: Path, n: int = 120, skill: float = 0.5, seed: int = 0, ids: list[str] | None = None
) -> Path:
    """A predictions CSV like `dermai evaluate` writes; `skill` raises the true class's
    probability (labels drawn from a fixed seed, so files share the labels)."""
    y = np.random.default_rng(123).integers(0, len(CLASSES), n)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(CLASSES)), n)
    p[np.arange(n), y] += skill
    p /= p.sum(1, keepdims=True)
    df = pd.DataFrame(
        {"image_id": ids or [f"img_{i:04d}" for i in range(n)], "label": [CLASSES[k] for k in y]}
    )
    for c, name in enumerate(CLASSES):
        df[f"p_{name}"] = np.round(p[:, c], 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n")
    return path


def compare(*args: str) -> list[str]:
    return ["compare", "--bootstrap", "200", "--seed", "1", *args]


def test_identical_files_show_no_difference(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    b = tmp_path / "b.csv"
    b.write_bytes(a.read_bytes())
    assert main(compare(str(a), str(b))) == 0
    out = capsys.readouterr().out
    assert "same 120 test images" in out and "NOT a medical diagnostic tool" in out
    for label in ("accuracy", "balanced accuracy", "macro AUC"):
        line = next(x for x in out.splitlines() if x.startswith(label + " "))
        assert "+0.0000   [+0.0000, +0.0000]  within noise" in line
    assert "only A right on 0, only B right on 0 images; p = 1" in out
    assert "Verdict: no difference beyond the noise" in out


def test_a_clearly_better_b_exceeds_the_noise(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv", skill=0.0, seed=1)
    b = predictions(tmp_path / "b.csv", skill=1.5, seed=2, ids=None)
    assert main(compare(str(a), str(b))) == 0
    out = capsys.readouterr().out
    assert "B higher, beyond noise" in out
    assert "Verdict: the difference exceeds the noise (accuracy higher" in out
    # order-insensitive pairing: B's rows shuffled give the same report
    df = pd.read_csv(b).sample(frac=1.0, random_state=0)
    df.to_csv(tmp_path / "b_shuffled.csv", index=False)
    assert main(compare(str(a), str(tmp_path / "b_shuffled.csv"))) == 0
    assert capsys.readouterr().out.replace("b_shuffled.csv", "b.csv") == out
    # swapping A and B negates the difference
    assert main(compare(str(b), str(a))) == 0
    assert "B lower, beyond noise" in capsys.readouterr().out


def test_recall_of_a_named_class_is_compared_too(tmp_path, capsys):
    """`--recall mel` adds mel's recall (paired CI) and the mel images only one model finds,
    counted here by hand from the two files."""
    a = predictions(tmp_path / "a.csv", skill=0.0, seed=1)
    b = predictions(tmp_path / "b.csv", skill=1.5, seed=2)
    assert main(compare(str(a), str(b), "--recall", "mel")) == 0
    out = capsys.readouterr().out
    da, db = pd.read_csv(a), pd.read_csv(b)
    cols = [f"p_{c}" for c in CLASSES]
    mel = (da["label"] == "mel").to_numpy()
    found_a = da[cols].to_numpy().argmax(1) == CLASSES.index("mel")
    found_b = db[cols].to_numpy().argmax(1) == CLASSES.index("mel")
    ra, rb = found_a[mel].mean(), found_b[mel].mean()
    row = next(x for x in out.splitlines() if x.startswith("mel recall "))
    assert f"{ra:.4f} {rb:.4f} {rb - ra:+.4f}" in " ".join(row.split()) and "beyond noise" in row
    only_a, only_b = int((found_a & ~found_b & mel).sum()), int((found_b & ~found_a & mel).sum())
    assert (
        f"of {mel.sum()} images labelled mel, only A finds {only_a}, only B finds {only_b}" in out
    )
    assert "mel recall higher" in out  # in the verdict


def test_recall_of_an_unknown_class_is_a_one_line_error(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    err = one_line_error(capsys, compare(str(a), str(a), "--recall", "melanoma"))
    assert "--recall melanoma: not a class of" in err and "bcc, mel, nv" in err


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_different_image_sets_are_one_line_errors(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    b = predictions(tmp_path / "b.csv", ids=[f"other_{i}" for i in range(120)])
    err = one_line_error(capsys, compare(str(a), str(b)))
    assert err.startswith("dermai compare: error: ") and str(a) in err and str(b) in err
    assert "different images (120 only in A" in err
    short = predictions(tmp_path / "short.csv", n=119)
    err = one_line_error(capsys, compare(str(a), str(short)))
    assert "1 only in A, e.g. ['img_0119']; 0 only in B" in err


def test_missing_file_and_bad_csv(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    err = one_line_error(capsys, compare(str(a), str(tmp_path / "nope.csv")))
    assert err == f"dermai compare: error: predictions file not found: {tmp_path / 'nope.csv'}"
    (tmp_path / "bad.csv").write_text("image_id,label\nx,nv\n")
    err = one_line_error(capsys, compare(str(a), str(tmp_path / "bad.csv")))
    assert "bad.csv: not a predictions CSV" in err


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A DVC repo with two commits of reports/evaluate/predictions_test.csv (tracked in Git)."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "-q"],
        cwd=r,
        check=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    predictions(r / "reports/evaluate/predictions_test.csv", skill=0.2, seed=1)
    git(r, "add", "-A")
    git(r, "commit", "-qm", "a")
    git(r, "tag", "baseline")
    predictions(r / "reports/evaluate/predictions_test.csv", skill=0.3, seed=2)
    git(r, "commit", "-qam", "b")
    return r


def test_revisions_are_read_through_dvc(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    assert main(compare("baseline", "HEAD")) == 0
    out = capsys.readouterr().out
    assert "A = baseline:reports/evaluate/predictions_test.csv" in out
    assert "B = HEAD:reports/evaluate/predictions_test.csv" in out
    assert "Verdict:" in out


def test_unknown_revision_and_missing_path_are_one_line_errors(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    err = one_line_error(capsys, compare("baseline", "no-such-exp"))
    assert err == (
        "dermai compare: error: 'no-such-exp' is neither a predictions file nor a "
        "known experiment or Git revision in ."
    )
    err = one_line_error(capsys, compare("--path", "x/y.csv", "baseline", "HEAD"))
    assert err.startswith("dermai compare: error: baseline: no x/y.csv at that experiment")


def mcnemar_line(out: str) -> str:
    return next(x for x in out.splitlines() if x.startswith("McNemar on top-1"))


def test_the_mcnemar_verdict_reads_its_p_value(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    b = tmp_path / "b.csv"
    b.write_bytes(a.read_bytes())
    assert main(compare(str(a), str(b))) == 0
    assert mcnemar_line(capsys.readouterr().out).endswith("p = 1 (not significant at 0.05)")
    worse = predictions(tmp_path / "w.csv", skill=0.0, seed=1)
    better = predictions(tmp_path / "g.csv", skill=1.5, seed=2)
    assert main(compare(str(worse), str(better))) == 0
    line = mcnemar_line(capsys.readouterr().out)
    p = float(line.split("p = ")[1].split()[0])
    assert p < 0.05 and line.endswith(f"p = {p:.4g} < 0.05")


def test_labels_that_disagree_are_a_one_line_error(tmp_path, capsys):
    a = predictions(tmp_path / "a.csv")
    df = pd.read_csv(a)
    df.loc[5, "label"] = next(c for c in CLASSES if c != df.loc[5, "label"])
    df.to_csv(tmp_path / "b.csv", index=False)
    err = one_line_error(capsys, compare(str(a), str(tmp_path / "b.csv")))
    assert err == (
        f"dermai compare: error: {a} and {tmp_path / 'b.csv'} disagree on the label of 1 "
        "images (e.g. 'img_0005')"
    )


def test_resamples_and_seed_default_to_the_params(tmp_path, capsys, caplog):
    """Without --bootstrap/--seed: evaluate.bootstrap and base.seed of the params file, else
    params.py's defaults (no number of its own in compare)."""
    from dermai import params

    a = predictions(tmp_path / "a.csv", skill=0.0, seed=1)
    b = predictions(tmp_path / "b.csv", skill=0.3, seed=2)
    prm = tmp_path / "params.yaml"
    prm.write_text("evaluate: {bootstrap: 37}\nbase: {seed: 5}\n")
    with caplog.at_level("INFO", logger="dermai.commands.compare"):
        assert main(["compare", "--params", str(prm), str(a), str(b)]) == 0
        first = capsys.readouterr().out
        assert main(["compare", "--bootstrap", "37", "--seed", "5", str(a), str(b)]) == 0
        assert capsys.readouterr().out == first  # the same resamples: the same intervals
        assert main(["compare", "--params", str(tmp_path / "none.yaml"), str(a), str(b)]) == 0
    said = [r.getMessage() for r in caplog.records if "paired resamples" in r.getMessage()]
    assert "37 paired resamples" in said[0]
    assert f"{params.Params().evaluate.bootstrap} paired resamples" in said[-1]
