"""`dermai headline`: one small JSON from the stage reports; a missing input is one line."""

from __future__ import annotations

import json

from dermai.cli import main


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def args(tmp_path, **over):
    base = {
        "--index-summary": write(tmp_path / "index.json", {"indexed": 80, "rejected": 3}),
        "--leakage": write(tmp_path / "leak.json", {"after": {"cross_split_leakage_groups": 0}}),
        "--gate": write(tmp_path / "passed.json", {"gate": "passed"}),
        "--test-report": write(
            tmp_path / "report_test.json",
            {
                "accuracy": 0.5,
                "balanced_accuracy": 0.4,
                "macro_auc": 0.7,
                "ci": {"accuracy": {"low": 0.3, "high": 0.7}},
                "calibration": {"ece_after": 0.1},
            },
        ),
        "--export": write(tmp_path / "export.json", {"int8": {"agreement": 0.97}}),
        "--out": str(tmp_path / "metrics.json"),
    }
    base.update(over)
    return ["headline", *[x for kv in base.items() for x in kv]]


def test_writes_the_headline_file_byte_identically(tmp_path):
    assert main(args(tmp_path)) == 0
    first = (tmp_path / "metrics.json").read_bytes()
    out = json.loads(first)
    assert out["acc"] == 0.5 and out["acc_ci"] == "0.30-0.70" and out["gate"] is True
    assert out["images"] == 80 and out["rejects"] == 3 and out["leaks"] == 0
    assert list(out) == sorted(out)
    assert main(args(tmp_path)) == 0
    assert (tmp_path / "metrics.json").read_bytes() == first


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    rc = main(args(tmp_path, **{"--export": str(tmp_path / "nope.json")}))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [
        f"dermai headline: error: headline input not found: {tmp_path / 'nope.json'}"
    ]
    assert not (tmp_path / "metrics.json").exists()


def test_external_columns_only_when_the_split_held_a_site_out(tmp_path):
    ext = write(
        tmp_path / "report_external.json",
        {"accuracy": 0.41, "balanced_accuracy": 0.32, "macro_auc": 0.66},
    )
    # Default run: a stale report_external.json beside the others is not read.
    assert main(args(tmp_path, **{"--external-report": ext})) == 0
    assert not any(
        k.startswith("ext_") for k in json.loads((tmp_path / "metrics.json").read_text())
    )
    leak = write(
        tmp_path / "leak_ext.json",
        {"after": {"cross_split_leakage_groups": 0}, "external": {"sources": ["rosendahl"]}},
    )
    assert main(args(tmp_path, **{"--leakage": leak, "--external-report": ext})) == 0
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert (out["ext_acc"], out["ext_bacc"], out["ext_auc"]) == (0.41, 0.32, 0.66)
    assert out["acc"] == 0.5 and list(out) == sorted(out)
    missing = str(tmp_path / "none.json")
    assert main(args(tmp_path, **{"--leakage": leak, "--external-report": missing})) == 1
