"""Data gates: run the Great Expectations suites in expectations/ over the index and the splits.

Writes the full results (index.json, splits.json), summary.json and offline Data Docs (docs/) to
--out, then passed.json only if every expectation held, so a stage depending on passed.json cannot
run on data that failed the gate. The suites are static JSON; values that come from params.yaml
(class and age-group sets, expected split sizes) are passed as suite parameters at run time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dermai import params as params_mod
from dermai.core import gates
from dermai.core.ages import all_age_groups
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, write_json
from dermai.io.classes import read_classes

log = logging.getLogger(__name__)

SUITES = ("index", "splits")
# Columns that identify an unexpected row in the results (instead of a bare row number).
ROW_IDS = {"index": ["image_id"], "splits": ["check", "key", "split"]}
PASSED_FILE = "passed.json"
# Result keys that change from run to run; dropped so equal inputs give equal result bytes.
_VOLATILE_META = ("run_id", "validation_time", "validation_id", "checkpoint_id")
_PARTIAL_UNEXPECTED = 20


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
    p.add_argument("--classes", default=None,
                   help="class list written by `dermai index` (default: base.classes)")
    p.add_argument(
        "--no-docs", action="store_true", help="skip the Data Docs (faster; results still written)"
    )


def run(args: argparse.Namespace) -> None:
    params = params_mod.load(args.params)
    fractions = {name: float(getattr(params.split, name)) for name in gates.SPLITS}
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
        min_groups_for_presence=params.validate.min_groups_for_presence,
        build_docs=not args.no_docs,
    )
    if not summary["success"]:
        raise DermaiError(gates.gate_message(summary))


def read_table(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    """All columns as strings (a dhash like 0000000000001234 must not become an int); only empty
    fields are null, so an image_id or label spelled "NA" stays a value the gate can judge."""
    if not path.is_file():
        raise DermaiError(f"{what} not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DermaiError(f"{what} {path} is not a readable CSV: {first}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DermaiError(f"{what} {path} lacks column(s) {', '.join(missing)}")
    return df


def load_suite(path: Path) -> dict[str, Any]:
    """Read a checked-in suite and check what the gate relies on: unique meta.name per entry."""
    if not path.is_file():
        raise DermaiError(f"expectation suite not found: {path}")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DermaiError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    names = [(e.get("meta") or {}).get("name") for e in suite.get("expectations", [])]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise DermaiError(f"expectation suite {path}: every expectation needs a unique meta.name")
    return suite


def suite_parameter_names(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        if set(obj) == {"$PARAMETER"}:
            return {obj["$PARAMETER"]}
        return set().union(*(suite_parameter_names(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(suite_parameter_names(v) for v in obj))
    return set()


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
) -> dict[str, Any]:
    """Run both suites, write results, summary and docs; return the summary (never raises on a
    failed gate, so callers decide; `run` turns failure into a DermaiError). `build_docs=False`
    skips the Data Docs (a few tenths of a second) for callers that only need the verdict."""
    (out_dir / PASSED_FILE).unlink(missing_ok=True)  # a stale pass must not outlive a new run

    index = read_table(index_path, gates.REQUIRED["index"], "index")
    groups = read_table(groups_path, gates.REQUIRED["groups"], "groups")
    duplicates = read_table(duplicates_path, gates.REQUIRED["duplicates"], "duplicates")
    splits = {
        name: read_table(splits_dir / f"{name}.csv", gates.REQUIRED["split"], f"split {name}")
        for name in fractions
    }
    facts = gates.splits_facts(
        index,
        groups,
        duplicates,
        splits,
        min_groups_for_presence=min_groups_for_presence,
        presence_splits=[name for name, f in fractions.items() if f > 0],
    )
    frames = {"index": index, "splits": facts}
    parameters = {
        "index": gates.index_parameters(classes, age_groups),
        "splits": gates.splits_parameters(
            fractions, len(index), size_rel_tolerance, size_abs_tolerance
        ),
    }
    suites = {name: load_suite(expectations_dir / f"{name}.json") for name in SUITES}
    for name, suite in suites.items():
        missing = suite_parameter_names(suite["expectations"]) - set(parameters[name])
        if missing:
            raise DermaiError(
                f"suite {name} uses unknown parameter(s) {', '.join(sorted(missing))}; "
                f"known: {', '.join(sorted(parameters[name]))}"
            )

    results = _run_gx(suites, frames, parameters, out_dir, build_docs)

    summary: dict[str, Any] = {"success": True, "suites": {}}
    for name in SUITES:
        order = [e["meta"]["name"] for e in suites[name]["expectations"]]
        cleaned = _clean_result(results[name], order)
        write_json(out_dir / f"{name}.json", cleaned)
        body = _summarize(cleaned, parameters[name])
        summary["suites"][name] = body
        summary["success"] = summary["success"] and body["success"]
    write_json(out_dir / "summary.json", summary)

    n_ok = sum(b["n_passed"] for b in summary["suites"].values())
    n_all = sum(b["n_expectations"] for b in summary["suites"].values())
    log.info("validate: %d/%d expectations passed; results in %s", n_ok, n_all, out_dir)
    if summary["success"]:
        write_json(out_dir / PASSED_FILE, {"gate": "passed", "suites": list(SUITES)})
    return summary


def _import_gx() -> Any:
    """Import GX with analytics off and its loggers quiet (lazy: it costs seconds to import)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _run_gx(
    suites: Mapping[str, dict[str, Any]],
    frames: Mapping[str, pd.DataFrame],
    parameters: Mapping[str, dict[str, Any]],
    out_dir: Path,
    build_docs: bool = True,
) -> dict[str, dict[str, Any]]:
    gx = _import_gx()
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    docs_tmp = Path(tempfile.mkdtemp(prefix=".docs-", dir=out_dir))
    try:
        # Ephemeral: stores live in memory, nothing is read from or written to a GX project or
        # the home directory; the only files GX writes are the Data Docs under docs_tmp.
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            data_docs_sites={
                "local": {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_tmp.resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                }
            },
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        )
        context = gx.get_context(mode="ephemeral", project_config=config)
        source = context.data_sources.add_pandas("dermai")
        results = {}
        for name, suite_json in suites.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
            # A copy: GX assigns ids to the suite it is given, the file stays as checked in.
            suite = context.suites.add(ExpectationSuite(**json.loads(json.dumps(suite_json))))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            result = definition.run(
                batch_parameters={"dataframe": frames[name]},
                expectation_parameters=parameters[name],
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": _PARTIAL_UNEXPECTED,
                    "unexpected_index_column_names": ROW_IDS[name],
                },
                run_id=RunIdentifier(run_name="dermai-validate"),
            )
            results[name] = result.to_json_dict()
        if build_docs:
            context.build_data_docs(site_names=["local"])
            _add_static_index(docs_tmp)
            docs = out_dir / "docs"
            if docs.exists():
                shutil.rmtree(docs)
            os.replace(docs_tmp, docs)
    finally:
        if docs_tmp.exists():
            shutil.rmtree(docs_tmp)
    return results


def _add_static_index(site: Path) -> None:
    """GX's index page lists runs with CDN-hosted JavaScript, so offline it shows no links.
    Add a plain HTML list of the pages so the local site is navigable without a network."""
    index_html = site / "index.html"
    if not index_html.is_file():
        return
    pages = sorted(p.relative_to(site).as_posix() for p in site.glob("validations/**/*.html"))
    pages += sorted(p.relative_to(site).as_posix() for p in site.glob("expectations/**/*.html"))
    items = "".join(f'<li><a href="{p}">{p}</a></li>' for p in pages)
    block = (
        '<div class="container-fluid pl-5 pr-5" id="dermai-static-index">'
        f"<h4>Pages (static list, works offline)</h4><ul>{items}</ul></div>"
    )
    html = index_html.read_text(encoding="utf-8")
    anchor = '<div class="container-fluid'
    pos = html.find(anchor)
    if pos < 0:
        match = re.search(r"<body[^>]*>", html)
        pos = match.end() if match else 0
    with atomic_open(index_html, "w", encoding="utf-8") as fh:
        fh.write(html[:pos] + block + html[pos:])


def _clean_result(result: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """Drop run ids, times, random expectation ids and tracebacks (absolute paths into the venv);
    keep everything that depends on the data. Results follow the suite file's order."""
    result = json.loads(json.dumps(result, default=str))
    rank = {name: i for i, name in enumerate(order)}
    result["results"].sort(key=lambda r: rank[r["expectation_config"]["meta"]["name"]])
    meta = result.get("meta", {})
    for key in _VOLATILE_META:
        meta.pop(key, None)
    (meta.get("batch_markers") or {}).pop("ge_load_time", None)
    result.pop("id", None)
    for item in result.get("results", []):
        item.get("expectation_config", {}).pop("id", None)
        info = item.get("exception_info") or {}
        for entry in [info, *(v for v in info.values() if isinstance(v, dict))]:
            entry.pop("exception_traceback", None)
    return result


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """GX reports one exception as a flat dict, several as {metric id: dict}."""
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("exception_message"):
            message = str(entry["exception_message"]).strip().splitlines()[0]
            return message.removeprefix("Error: ")[:200]
    return None


def _summarize(result: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    expectations: dict[str, dict[str, Any]] = {}
    for item in result["results"]:
        config = item["expectation_config"]
        res = item.get("result") or {}
        entry: dict[str, Any] = {"success": bool(item["success"]), "type": config["type"]}
        if res.get("unexpected_count") is not None:
            entry["unexpected_count"] = res["unexpected_count"]
            entry["element_count"] = res.get("element_count")
        elif (res.get("details") or {}).get("mismatched"):
            entry["mismatched"] = res["details"]["mismatched"]
        elif isinstance(res.get("observed_value"), int | float | str):  # not the column list
            entry["observed_value"] = res["observed_value"]
            kwargs = config.get("kwargs", {})
            if "min_value" in kwargs or "max_value" in kwargs:
                entry["expected"] = f"{kwargs.get('min_value')}..{kwargs.get('max_value')}"
        error = _exception_message(item.get("exception_info") or {})
        if error and not entry["success"]:
            entry["error"] = error
        expectations[config["meta"]["name"]] = entry
    return {
        "success": bool(result["success"]),
        "n_expectations": len(expectations),
        "n_passed": sum(e["success"] for e in expectations.values()),
        "parameters": dict(parameters),
        "expectations": expectations,
    }
