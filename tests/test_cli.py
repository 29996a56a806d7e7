"""The one CLI: every stage command exists, has --help, and failures are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dermai.cli import COMMANDS, build_parser, main

STAGES = [
    "sample",
    "index",
    "dedup",
    "split",
    "validate",
    "pretrained",
    "tfrecords",
    "features",
    "train",
    "cv-train",
    "cv",
    "evaluate",
    "export",
    "headline",
]


def test_stage_commands_match_dvc_yaml_stage_names():
    stages = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    assert stages == STAGES
    assert set(STAGES) <= set(COMMANDS)


def test_top_level_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "dermai.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out
    assert "NOT a medical diagnostic tool" in " ".join(out.split())  # argparse wraps lines


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: dermai " + command in capsys.readouterr().out


def test_failure_is_one_line_and_non_zero(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("index: {layot: manifest}\n")
    rc = main(
        [
            "index",
            "--params",
            str(tmp_path / "p.yaml"),
            "--out",
            "x",
            "--rejects",
            "y",
            "--summary",
            "z",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("dermai index: error: params: unknown key(s) index.layot")


def test_top_level_help_imports_no_command_module():
    """`dermai --help` lists commands from COMMANDS alone (bench/bench_cli_help.py times it)."""
    code = (
        "import sys\nfrom dermai.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dermai.stages.')"
        " or m in ('tensorflow', 'keras', 'great_expectations')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_command_help_imports_only_that_command():
    code = (
        "import sys\nfrom dermai.cli import main\ntry:\n    main(['sample', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dermai.stages.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "['dermai.stages.sample']"


@pytest.mark.parametrize(
    ("argv", "level"), [(["sample", "--help"], "2"), (["--debug", "sample", "--help"], "0")]
)
def test_tensorflow_cpp_logs_quiet_unless_debug(argv, level, monkeypatch):
    import logging
    import os

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("DERMAI_DEBUG", raising=False)
    # As an earlier quiet call in this process leaves it (any test that ran `main` before):
    # --debug must undo it, whatever ran first on this xdist worker.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with pytest.raises(SystemExit):
        main(argv)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level  # read by TF's C++ at import
    quiet = logging.getLogger("tensorflow").level == logging.ERROR
    assert quiet == (level == "2")
    logging.getLogger("tensorflow").setLevel(logging.NOTSET)
    logging.getLogger("absl").setLevel(logging.NOTSET)
