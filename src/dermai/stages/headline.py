"""Gather the headline metrics into one small file, THE metrics of the pipeline.

Reads what index, split, validate, evaluate and export wrote and writes the dozen numbers a
reader compares between experiments (see `dermai.core.headline` for the keys). Everything else
those stages write stays a plain output, so `dvc metrics show` and `dvc exp show` stay readable.
The held-out site's numbers are added only when the split held one out (leakage.json says so),
so a default run has no external columns and a stale external report is never read.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from dermai.core.headline import headline
from dermai.errors import DermaiError
from dermai.io.atomic import write_json

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-summary", required=True, help="data/reports/index_summary.json")
    p.add_argument("--leakage", required=True, help="data/reports/leakage.json")
    p.add_argument(
        "--gate",
        required=True,
        help="validate's passed.json (present only when every expectation held)",
    )
    p.add_argument("--test-report", required=True, help="evaluate's report_test.json")
    p.add_argument(
        "--external-report",
        default=None,
        help="evaluate's report_external.json (read only when leakage.json names held-out sites)",
    )
    p.add_argument("--export", required=True, help="export's metrics JSON (int8 agreement)")
    p.add_argument("--cv", default=None, help="the cv report (cv keys only when folds are on)")
    p.add_argument("--out", required=True, help="headline metrics JSON to write")


def _read(path: str) -> Any:
    f = Path(path)
    if not f.is_file():
        raise DermaiError(f"headline input not found: {f}")
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DermaiError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def run(args: argparse.Namespace) -> None:
    leakage = _read(args.leakage)
    external = None
    if "external" in leakage:
        if not args.external_report:
            raise DermaiError("headline: the split held a site out; pass --external-report")
        external = _read(args.external_report)
    try:
        out = headline(
            test_report=_read(args.test_report),
            export=_read(args.export),
            leakage=leakage,
            index_summary=_read(args.index_summary),
            gate_passed=Path(args.gate).is_file(),
            external_report=external,
            cv_report=_read(args.cv) if args.cv else None,
        )
    except KeyError as exc:
        raise DermaiError(f"headline: an input lacks the field {exc}") from None
    write_json(args.out, out)
    log.info("headline metrics: %s", json.dumps(out, sort_keys=True))
