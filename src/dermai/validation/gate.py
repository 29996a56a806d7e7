"""The data gate: the Great Expectations suites in expectations/ over the index and the splits.

Writes the full results (index.json, splits.json), summary.json and offline Data Docs (docs/) to
the output folder, then passed.json only if every expectation held, so a stage depending on
passed.json cannot run on data that failed the gate. The suites are static JSON; values that
come from params.yaml (class and age-group sets, expected split sizes) are passed as suite
parameters at run time (`core.gates`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dermai.core import gates
from dermai.core.schema import EXTERNAL, FOLDS_FILE
from dermai.errors import DermaiError
from dermai.io.atomic import write_json
from dermai.io.tables import read_table
from dermai.validation import gx

log = logging.getLogger(__name__)

SUITES = ("index", "splits")
PASSED_FILE = "passed.json"
SUMMARY_FILE = "summary.json"


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
    names = list(SUITES)
    if (splits_dir / FOLDS_FILE).is_file():  # cross-validation folds: the folds suite too
        folds = read(splits_dir / FOLDS_FILE, "folds", "split")
        members = gates.fold_members(index, folds, splits.get(EXTERNAL))
        k = len(members) - (EXTERNAL in members)
        frames["folds"] = gates.splits_facts(
            index,
            groups,
            duplicates,
            members,
            min_groups_for_presence=max(min_groups_for_presence, k),
            presence_splits=[m for m in members if m != EXTERNAL],
            held_out=held_out,
        )
        parameters["folds"] = {}
        names.append("folds")
    suites = {name: gx.load_suite(expectations_dir / f"{name}.json") for name in names}
    for name, suite in suites.items():
        missing = gx.suite_parameter_names(suite["expectations"]) - set(parameters[name])
        if missing:
            raise DermaiError(
                f"suite {name} uses unknown parameter(s) {', '.join(sorted(missing))}; "
                f"known: {', '.join(sorted(parameters[name]))}"
            )

    results = gx.run_suites(suites, frames, parameters, out_dir, build_docs)

    summary: dict[str, Any] = {"success": True, "suites": {}}
    for name in names:
        order = [e["meta"]["name"] for e in suites[name]["expectations"]]
        cleaned = gx.clean_result(results[name], order)
        if name in SUITES:  # the folds' full results: in summary.json only (no declared file)
            write_json(out_dir / f"{name}.json", cleaned)
        body = gx.summarize(cleaned, parameters[name])
        summary["suites"][name] = body
        summary["success"] = summary["success"] and body["success"]
    write_json(out_dir / SUMMARY_FILE, summary)

    n_ok = sum(b["n_passed"] for b in summary["suites"].values())
    n_all = sum(b["n_expectations"] for b in summary["suites"].values())
    log.info("validate: %d/%d expectations passed; results in %s", n_ok, n_all, out_dir)
    if summary["success"]:
        write_json(out_dir / PASSED_FILE, {"gate": "passed", "suites": names})
    return summary
