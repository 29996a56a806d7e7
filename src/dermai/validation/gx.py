"""Great Expectations adapter: run checked-in suites over in-memory frames, keep the results
deterministic, summarise them, and build offline Data Docs.

Kept apart from the `validate` stage so the stage only reads tables and writes verdicts; the GX
API (ephemeral context, validation definitions, result cleaning) lives only here.
"""

from __future__ import annotations

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

from dermai.errors import DermaiError
from dermai.io.atomic import atomic_open, remove_stale, temp_prefix

log = logging.getLogger(__name__)

# Columns that identify an unexpected row in the results (instead of a bare row number).
ROW_IDS = {
    "index": ["image_id"],
    "splits": ["check", "key", "split"],
    "folds": ["check", "key", "split"],
}
# Result keys that change from run to run; dropped so equal inputs give equal result bytes.
_VOLATILE_META = ("run_id", "validation_time", "validation_id", "checkpoint_id")
_PARTIAL_UNEXPECTED = 20


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


def _import_gx() -> Any:
    """Import GX with analytics off and its loggers quiet (lazy: it costs seconds to import)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def run_suites(
    suites: Mapping[str, dict[str, Any]],
    frames: Mapping[str, pd.DataFrame],
    parameters: Mapping[str, dict[str, Any]],
    out_dir: Path,
    build_docs: bool = True,
) -> dict[str, dict[str, Any]]:
    gx = _import_gx()
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir / "docs")  # a killed run's half-built site
    docs_tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir / "docs"), dir=out_dir))
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
        # One Checkpoint per suite (each validates its own frame); GX's UpdateDataDocsAction
        # renders the Data Docs site from the results, so no separate docs build is needed.
        actions = [UpdateDataDocsAction(name="docs", site_names=["local"])] if build_docs else []
        results = {}
        for name, suite_json in suites.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
            # A copy: GX assigns ids to the suite it is given, the file stays as checked in.
            suite = context.suites.add(ExpectationSuite(**json.loads(json.dumps(suite_json))))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=f"dermai-{name}",
                    validation_definitions=[definition],
                    actions=actions,
                    result_format={
                        "result_format": "SUMMARY",
                        "partial_unexpected_count": _PARTIAL_UNEXPECTED,
                        "unexpected_index_column_names": ROW_IDS[name],
                    },
                )
            )
            outcome = checkpoint.run(
                batch_parameters={"dataframe": frames[name]},
                expectation_parameters=parameters[name],
                run_id=RunIdentifier(run_name="dermai-validate"),
            )
            (result,) = outcome.run_results.values()
            results[name] = result.to_json_dict()
        if build_docs:
            _add_static_index(docs_tmp)
            vendor_docs(docs_tmp)
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


VENDOR = Path(__file__).resolve().parent / "docs_vendor"
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*/(logo-long\.png)[^\"']*")
# CDN tags carry Subresource Integrity; with crossorigin a file:// page refuses the script (CORS)
_SRI = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')


def vendor_docs(site: Path, vendor: Path = VENDOR) -> None:
    """Point the Data Docs at vendored copies of their CDN files (docs_vendor/manifest.json), so
    offline they are styled and the Status column's Font Awesome icons render; drop the tags of
    what they do not need (listed under "dropped"), and show GX's logo from the site's own
    static/images. Afterwards no page loads anything from the network."""
    manifest = json.loads((vendor / "manifest.json").read_text(encoding="utf-8"))
    target = site / "static" / "vendor"
    for item in manifest["files"]:
        dest = target / item["dest"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vendor / item["dest"], dest)
    shutil.copytree(vendor / "LICENSES", target / "LICENSES", dirs_exist_ok=True)
    shutil.copyfile(vendor / "VERSIONS", target / "VERSIONS")
    urls = {i["url"]: i["dest"] for i in manifest["files"] if i["url"]}
    dropped = "|".join(re.escape(u) for u in manifest["dropped"])
    tags = re.compile(
        rf"<script[^>]*src=\"(?:{dropped})\"[^>]*>\s*</script>|<link[^>]*href=\"(?:{dropped})\"[^>]*>"
    )
    for page in site.rglob("*.html"):
        up = "../" * (len(page.relative_to(site).parts) - 1)
        html = page.read_text(encoding="utf-8")
        for url, dest in urls.items():
            html = html.replace(f'"{url}"', f'"{up}static/vendor/{dest}"')
        html = _SRI.sub("", tags.sub("", html))
        html = _LOGO.sub(f"{up}static/images/\\1", html)
        with atomic_open(page, "w", encoding="utf-8") as fh:
            fh.write(html)


def clean_result(result: dict[str, Any], order: list[str]) -> dict[str, Any]:
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


def summarize(result: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
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
