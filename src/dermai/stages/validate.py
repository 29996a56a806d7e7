"""Data gates: run the Great Expectations suites in expectations/ over the index and the splits.

Writes the full results (index.json, splits.json), summary.json and offline Data Docs (docs/) to
--out, then passed.json only if every expectation held, so a stage depending on passed.json cannot
run on data that failed the gate. The Data Docs are not a DVC output: GX writes run times and
random ids into their HTML, so their bytes differ on every run; each run replaces them. The
suites are static JSON; values that come from params.yaml (class and age-group sets, expected
split sizes) are passed as suite parameters at run time. With `split.external_source` set, the
`external` split (a held-out site) joins every cross-split check and gets its own size and
membership checks; train/val/test sizes are then expected from the images not held out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dermai import params as params_mod
from dermai.core import gates
from dermai.core.ages import all_age_groups
from dermai.errors import DermaiError
from dermai.io.classes import read_classes
from dermai.validation.gate import validate

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--index", default="data/index/index.csv", help="index CSV")
    p.add_argument("--groups", default="data/index/groups.csv", help="leakage groups CSV")
    p.add_argument("--duplicates", default="data/reports/duplicates.csv", help="duplicates CSV")
    p.add_argument("--splits", default="data/splits", help="dir with train/val/test.csv")
    p.add_argument(
        "--expectations", default="expectations", help="dir with the suite JSON files (read only)"
    )
    p.add_argument("--out", default="data/reports/validation", help="output dir")
    p.add_argument(
        "--classes",
        default=None,
        help="class list written by `dermai index` (default: base.classes)",
    )
    p.add_argument(
        "--no-docs", action="store_true", help="skip the Data Docs (faster; results still written)"
    )


def run(args: argparse.Namespace) -> None:
    params = params_mod.load(args.params)
    fractions = params.split.fractions()
    summary = validate(
        index_path=Path(args.index),
        groups_path=Path(args.groups),
        duplicates_path=Path(args.duplicates),
        splits_dir=Path(args.splits),
        expectations_dir=Path(args.expectations),
        out_dir=Path(args.out),
        classes=read_classes(args.classes, list(params.base.classes)),
        age_groups=all_age_groups(list(params.base.age_edges)),
        fractions=fractions,
        size_rel_tolerance=params.validate.size_rel_tolerance,
        size_abs_tolerance=params.validate.size_abs_tolerance,
        min_groups_for_presence=params.split.min_groups_for_presence,
        build_docs=not args.no_docs,
        external_source=list(params.split.external_source),
    )
    if not summary["success"]:
        raise DermaiError(gates.gate_message(summary))
