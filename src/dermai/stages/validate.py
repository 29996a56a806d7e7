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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dermai import params as params_mod
from dermai.core import gates
from dermai.core.ages import all_age_groups
from dermai.core.schema import EXTERNAL, SPLITS
from dermai.errors import DermaiError
from dermai.io.atomic import write_json
from dermai.io.classes import read_classes
from dermai.io.tables import read_table
from dermai.validation import gx

log = logging.getLogger(__name__)

SUITES = ("index", "splits")
PASSED_FILE = "passed.json"
SUMMARY_FILE = "summary.json"


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
    fractions = {name: float(getattr(params.split, name)) for name in SPLITS}
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


def validate(
    *,
    index_path: Path,
    groups_path: Path,
    duplicates_path: Path,
    splits_dir: Path,
    expectations_dir: Path,
    out_dir: Path,
    classes: list[str],
    age_groups: list[str],
    fractions: Mapping[str, float],
    size_rel_tolerance: float,
    size_abs_tolerance: float,
    min_groups_for_presence: int,
    build_docs: bool = True,
    external_source: Sequence[str] = (),
) -> dict[str, Any]:
    """Run both suites, write results, summary and docs; return the summary (never raises on a
    failed gate, so callers decide; `run` turns failure into a DermaiError). `build_docs=False`
    skips the Data Docs (a few tenths of a second) for callers that only need the verdict."""
    # A stale verdict must not outlive a new run: a crash below leaves neither file, never the
    # previous run's pass or "success": true.
    for stale in (PASSED_FILE, SUMMARY_FILE):
        (out_dir / stale).unlink(missing_ok=True)

    # Empty fields become null, so the gates judge them as missing values.
    def read(path: Path, what: str, kind: str) -> pd.DataFrame:
        return read_table(path, gates.REQUIRED[kind], what, empty_as_null=True)

    index = read(index_path, "index", "index")
    groups = read(groups_path, "groups", "groups")
    duplicates = read(duplicates_path, "duplicates", "duplicates")
    names = [*fractions, EXTERNAL] if external_source else list(fractions)
    splits = {name: read(splits_dir / f"{name}.csv", f"split {name}", "split") for name in names}
    try:
        held_out = gates.external_ids(index, groups, list(external_source))
    except ValueError as exc:
        raise DermaiError(str(exc)) from exc
    facts = gates.splits_facts(
        index,
        groups,
        duplicates,
        splits,
        min_groups_for_presence=min_groups_for_presence,
        presence_splits=[name for name, f in fractions.items() if f > 0],
        held_out=held_out,
    )
    frames = {"index": index, "splits": facts}
    parameters = {
        "index": gates.index_parameters(classes, age_groups),
        "splits": gates.splits_parameters(
            fractions, len(index), size_rel_tolerance, size_abs_tolerance, len(held_out)
        ),
    }
    suites = {name: gx.load_suite(expectations_dir / f"{name}.json") for name in SUITES}
    for name, suite in suites.items():
        missing = gx.suite_parameter_names(suite["expectations"]) - set(parameters[name])
        if missing:
            raise DermaiError(
                f"suite {name} uses unknown parameter(s) {', '.join(sorted(missing))}; "
                f"known: {', '.join(sorted(parameters[name]))}"
            )

    results = gx.run_suites(suites, frames, parameters, out_dir, build_docs)

    summary: dict[str, Any] = {"success": True, "suites": {}}
    for name in SUITES:
        order = [e["meta"]["name"] for e in suites[name]["expectations"]]
        cleaned = gx.clean_result(results[name], order)
        write_json(out_dir / f"{name}.json", cleaned)
        body = gx.summarize(cleaned, parameters[name])
        summary["suites"][name] = body
        summary["success"] = summary["success"] and body["success"]
    write_json(out_dir / SUMMARY_FILE, summary)

    n_ok = sum(b["n_passed"] for b in summary["suites"].values())
    n_all = sum(b["n_expectations"] for b in summary["suites"].values())
    log.info("validate: %d/%d expectations passed; results in %s", n_ok, n_all, out_dir)
    if summary["success"]:
        write_json(out_dir / PASSED_FILE, {"gate": "passed", "suites": list(SUITES)})
    return summary
