"""`dermai evaluate` end to end on tiny TFRecords and a tiny model: every output, deterministic
bytes, the temperature saved where `dermai.runtime.inference` reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tinymodel
from dermai import DISCLAIMER
from dermai.cli import main

CLASSES = ["bcc", "mel", "nv"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluate")
    raw = tmp / "raw"
    df = tinymodel.write_index(raw, CLASSES, [["s1", "s2"][(k // 2) % 2] for k in range(60)])
    sp = tmp / "splits"
    sp.mkdir()
    df.iloc[:12].to_csv(sp / "train.csv", index=False)
    df.iloc[12:36].to_csv(sp / "val.csv", index=False)
    df.iloc[36:].to_csv(sp / "test.csv", index=False)
    (tmp / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "base": {"classes": CLASSES},
                "index": {"raw_root": str(raw), "workers": 1},
                "model": {"image_height": tinymodel.H, "image_width": tinymodel.W},
                "evaluate": {"bootstrap": 200, "ece_bins": 10},
            }
        )
    )
    assert (
        main(
            [
                "tfrecords",
                "--params",
                str(tmp / "params.yaml"),
                "--splits",
                str(sp),
                "--out",
                str(tmp / "tfrecords"),
            ]
        )
        == 0
    )
    tinymodel.save(tinymodel.build(CLASSES), tmp / "models", CLASSES)
    reports = tmp / "data_reports"
    reports.mkdir()
    pd.DataFrame(
        [
            {"split": s, "condition": c, "age_group": "0-29", "count": 4}
            for s in ("train", "val", "test")
            for c in CLASSES
        ]
    ).to_csv(reports / "split_summary.csv", index=False)
    (reports / "leakage.json").write_text(
        json.dumps(
            {
                "before": {"cross_split_exact_pairs": 3, "method": "naive", "sizes": {"test": 24}},
                "after": {
                    "cross_split_exact_pairs": 0,
                    "method": "policy=group",
                    "sizes": {"test": 24},
                },
            }
        )
    )
    (reports / "index_summary.json").write_text(
        json.dumps({"by_source": {"s1": 30, "s2": 30}, "rejected": 0})
    )
    return tmp


def evaluate(tmp: Path, name: str, params: str = "params.yaml", code: int = 0) -> Path:
    out = tmp / name
    r = tmp / "data_reports"
    assert (
        main(
            [
                "evaluate",
                "--params",
                str(tmp / params),
                "--model",
                str(tmp / "models" / "model.keras"),
                "--tfrecords",
                str(tmp / "tfrecords"),
                "--split-summary",
                str(r / "split_summary.csv"),
                "--leakage",
                str(r / "leakage.json"),
                "--index-summary",
                str(r / "index_summary.json"),
                "--calibration",
                str(out / "calibration.json"),
                "--out",
                str(out / "reports"),
                "--card",
                str(out / "model_card.md"),
                "--live",
                str(out / "live"),
                "--ood",
                str(out / "ood.json"),
                "--card-json",
                str(out / "model_card.json"),
            ]
        )
        == code
    )
    return out


def test_evaluate_outputs_and_determinism(project, caplog):
    from dermai.runtime import bundle as bundle_mod

    with caplog.at_level("INFO", logger="dermai"):
        a, b = evaluate(project, "a"), evaluate(project, "b")
    assert "predicted val: 24 images" in caplog.text  # progress lines
    assert "test: metrics with" in caplog.text
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f

    metrics = json.loads((a / "live" / "metrics.json").read_text())
    for split, n in (("val", 24), ("test", 24)):
        m = metrics[split]
        assert m["n"] == n
        assert set(m["per_class"]) == set(CLASSES)
        assert set(m["subgroups"]) == {"age_group", "source"}
        assert set(m["subgroups"]["age_group"]) == {"0-29", "60+"}
        for k in ("accuracy", "balanced_accuracy", "macro_auc"):
            assert m["ci"][k]["low"] <= m[k] <= m["ci"][k]["high"]
        assert m["calibration"]["ece_after"] is not None
    plots = a / "live" / "plots" / "custom" / "test"  # long format, see core/plotdata.py
    confusion = json.loads((plots / "confusion.json").read_text())
    assert len(confusion) == len(CLASSES) ** 2
    assert sum(r["count"] for r in confusion) == 24
    roc = json.loads((plots / "roc.json").read_text())
    assert {r["class"] for r in roc} == set(CLASSES)
    assert all("AUC" in r["legend"] for r in roc)
    assert {r["class"] for r in json.loads((plots / "precision_recall.json").read_text())} == set(
        CLASSES
    )
    reliability = json.loads((plots / "reliability.json").read_text())
    assert {r["curve_index"] for r in reliability} == {0, 1}
    cal = json.loads((a / "calibration.json").read_text())
    assert cal["temperature"] == metrics["temperature"] > 0
    # Validation NLL can only go down: T=1 is inside the search bounds.
    assert cal["val_nll_after"] <= cal["val_nll_before"]
    card = (a / "model_card.md").read_text()
    assert DISCLAIMER in card and "| test | 24 |" in card and "cross split exact pairs" in card
    assert (a / "reports" / "errors" / "index.html").is_file()
    assert (a / "reports" / "report_test.json").is_file()
    guard = json.loads((a / "ood.json").read_text())  # fitted on train, threshold on val:
    # the largest threshold keeping >= 95% of the 24 val images rejects exactly floor(1.2) = 1
    assert (guard["method"], guard["space"]) == ("ppca", "trunk")  # the default: frozen trunk
    assert guard["measured"]["accepted_val"] == round(23 / 24, 6)
    assert guard["measured"]["n_train"] == 12
    summary = json.loads((a / "model_card.json").read_text())
    assert summary["classes"] == CLASSES and summary["metrics"]["n"] == 24
    # Per-image test predictions, what `dermai compare` pairs: fixed-format calibrated
    # probabilities whose argmax and accuracy match the report.
    lines = (a / "reports" / "predictions_test.csv").read_text().splitlines()
    assert lines[0] == ",".join(
        ["image_id", "label", "predicted", "confidence", *(f"p_{c}" for c in CLASSES)]
    )
    rows = [r.split(",") for r in lines[1:]]
    assert len(rows) == 24 and len({r[0] for r in rows}) == 24
    for r in rows:
        probs = [float(v) for v in r[4:]]
        assert all(len(v.split(".")[1]) == 6 for v in r[3:])
        assert abs(sum(probs) - 1) < 1e-4 and r[2] == CLASSES[probs.index(max(probs))]
    acc = sum(r[1] == r[2] for r in rows) / len(rows)
    assert acc == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)

    # The temperature is "saved with the model": inference picks it up from beside the model.
    model_dir = project / "models"
    (model_dir / "calibration.json").write_bytes((a / "calibration.json").read_bytes())
    try:
        assert bundle_mod.load(model_dir / "model.keras").temperature == cal["temperature"]
    finally:
        (model_dir / "calibration.json").unlink()


def _with_tta(tmp: Path, mode: str) -> str:
    """A params file like the project's, with `evaluate.tta: mode`."""
    prm = yaml.safe_load((tmp / "params.yaml").read_text())
    prm["evaluate"] = {**prm["evaluate"], "tta": mode}
    (tmp / f"params_{mode}.yaml").write_text(yaml.safe_dump(prm))
    return f"params_{mode}.yaml"


def _test_probabilities(folder: Path) -> dict[str, list[float]]:
    rows = (folder / "reports" / "predictions_test.csv").read_text().splitlines()[1:]
    return {r.split(",")[0]: [float(v) for v in r.split(",")[4:]] for r in rows}


def test_tta_flips_fits_the_temperature_on_tta_outputs_and_records_the_mode(project, capsys):
    import tensorflow as tf

    from dermai.models import data as tfdata
    from dermai.runtime import bundle as bundle_mod

    plain = evaluate(project, "plain")
    flips = evaluate(project, "flips", _with_tta(project, "flips"))
    cal = json.loads((flips / "calibration.json").read_text())
    assert cal["tta"] == "flips"
    assert "tta" not in json.loads((plain / "calibration.json").read_text())  # none: as before
    card = (flips / "model_card.md").read_text()
    assert "Test-time augmentation: `flips`" in card and "do NOT apply it" in card
    assert "Test-time augmentation" not in (plain / "model_card.md").read_text()
    # The guard scores the un-augmented image (as every runtime does) with the TTA temperature.
    guard = json.loads((flips / "ood.json").read_text())
    assert guard["temperature"] == pytest.approx(cal["temperature"], abs=1e-6)
    assert guard["measured"]["accepted_val"] == round(23 / 24, 6)  # 1 of 24 val images below

    # The runtime, given that calibration.json, reproduces the evaluated test probabilities.
    got = _test_probabilities(flips)
    assert got != _test_probabilities(plain)
    pred = bundle_mod.load(
        project / "models" / "model.keras", calibration=flips / "calibration.json"
    )
    assert pred.tta == "flips"
    for x, _, meta in tfdata.dataset(str(project / "tfrecords"), "test", 64, with_meta=True):
        ids = [v.decode() for v in meta["image_id"].numpy().tolist()]
        proba = pred.analyse(tf.cast(x, tf.float32).numpy()).probabilities
        for i, p in zip(ids, proba, strict=True):
            assert got[i] == pytest.approx(p.tolist(), abs=1e-5), i

    capsys.readouterr()
    evaluate(project, "dihedral", _with_tta(project, "dihedral"), code=1)  # 24 x 32 input
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "tta=dihedral needs a square input" in err


def _with_operating_point(tmp: Path, target: str, recall: float) -> str:
    """A params file like the project's, with `evaluate.operating_point` on."""
    prm = yaml.safe_load((tmp / "params.yaml").read_text())
    prm["evaluate"] = {**prm["evaluate"], "operating_point": {"target": target, "recall": recall}}
    (tmp / "params_op.yaml").write_text(yaml.safe_dump(prm))
    return "params_op.yaml"


def test_operating_point_is_chosen_on_val_reported_on_test_and_changes_nothing_else(
    project, capsys
):
    """On: operating_point.json and a card section; every other output byte-identical to the
    run without it (off writes no file). `dermai operating-point` on the written predictions
    CSVs gives the same threshold and test numbers."""
    from dermai.core.operating_point import choose_threshold

    plain = evaluate(project, "op_off")
    on = evaluate(project, "op_on", _with_operating_point(project, "mel", 0.8))
    assert not (plain / "reports" / "operating_point.json").exists()
    files = sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*") if p.is_file())
    assert sorted(p.relative_to(on).as_posix() for p in on.rglob("*") if p.is_file()) == sorted(
        [*files, "reports/operating_point.json"]
    )
    for f in files:
        if f != "model_card.md":
            assert (plain / f).read_bytes() == (on / f).read_bytes(), f

    rep = json.loads((on / "reports" / "operating_point.json").read_text())
    point = rep["thresholds"]["recall>=0.8"]
    val = pd.read_csv(on / "reports" / "predictions_val.csv")
    y = val["label"].map(CLASSES.index).to_numpy()
    proba = val[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert point["threshold"] == pytest.approx(choose_threshold(y, proba, 1, 0.8), abs=1e-6)
    assert point["val"]["sensitivity"] >= 0.8
    test = pd.read_csv(on / "reports" / "predictions_test.csv")
    flagged = test["p_mel"].to_numpy() >= point["threshold"]
    is_mel = (test["label"] == "mel").to_numpy()
    got = rep["test"]["decisions"]["recall>=0.8"]
    assert got["sensitivity"]["value"] == pytest.approx(flagged[is_mel].mean(), abs=1e-6)
    assert got["specificity"]["value"] == pytest.approx((~flagged[~is_mel]).mean(), abs=1e-6)
    default = rep["test"]["decisions"]["default"]
    report_test = json.loads((on / "reports" / "report_test.json").read_text())
    assert default["accuracy"]["value"] == pytest.approx(report_test["accuracy"], abs=1e-6)
    assert default["balanced_accuracy"]["value"] == pytest.approx(
        report_test["balanced_accuracy"], abs=1e-6
    )
    assert default["sensitivity"]["value"] == pytest.approx(
        report_test["per_class"]["mel"]["recall"], abs=1e-6
    )

    card = (on / "model_card.md").read_text()
    assert "### Operating point `mel` (a choice for triage use, not an improvement)" in card
    assert f"{point['threshold']:.4f}" in card and "Reported only" in card
    plain_card = (plain / "model_card.md").read_text()
    for c in (card, plain_card):
        assert "### Sensitivity and specificity (test, default decision)" in c
    assert "Operating point" not in plain_card

    capsys.readouterr()
    args = ["operating-point", str(on / "reports"), "--target", "mel", "--recall", "0.8"]
    assert main([*args, "--bootstrap", "200", "--seed", "42"]) == 0
    printed = capsys.readouterr().out
    assert f"| {point['threshold']:.4f} |" in printed
    from dermai.core.operating_point import markdown

    assert markdown(rep) in printed  # the same table, from the CSVs


def test_operating_point_class_must_be_the_models(project, capsys):
    capsys.readouterr()
    prm = yaml.safe_load((project / "params.yaml").read_text())
    prm["base"]["classes"] = []  # classes from the data: evaluate checks the model's
    prm["evaluate"] = {**prm["evaluate"], "operating_point": {"target": "scc", "recall": 0.8}}
    (project / "params_op_bad.yaml").write_text(yaml.safe_dump(prm))
    evaluate(project, "op_bad", "params_op_bad.yaml", code=1)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "evaluate.operating_point.target='scc' is not a class of this model" in err
