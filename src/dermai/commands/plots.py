"""Check every `dvc.yaml` plot has data, then write the offline plots page.

Why: `dvc plots show` only warns "failed to load some plots" (without the file) and still
writes the page, with a blank box where the chart should be. This fails instead, with one
line naming each missing or empty data file, and otherwise runs `dvc plots show` (whose
HTML template, `.dvc/plots/page.html`, draws everything offline).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from dermai.errors import DermaiError
from dermai.io.outdir import output_dir

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", default=".", help="the DVC project (default: current folder)")
    p.add_argument(
        "--out",
        default=None,
        help="page folder (default: DVC's plots.out_dir, dvc_plots): new, empty, or an earlier "
        "`dermai plots` page's (its own files are replaced, others left alone)",
    )
    p.add_argument("--check-only", action="store_true", help="check the data, write no page")


def problems(repo_dir: str | Path) -> list[str]:
    """One line per plot whose data cannot be drawn: a missing or unreadable file, no rows,
    or fields that the plot definition names but the data lack."""
    from dvc.render.match import match_defs_renderers
    from dvc.repo import Repo

    out: list[str] = []
    with Repo(str(repo_dir)) as repo:
        data = repo.plots.show()
        for rev, d in data.items():
            if err := d.get("definitions", {}).get("error"):
                out.append(f"{rev}: dvc.yaml plots cannot be read: {err}")
        for r in match_defs_renderers(data, templates_dir=repo.plots.templates_dir):
            name = r.renderer.name
            for rev, errs in r.source_errors.items():
                for src, e in errs.items():
                    what = "is missing" if isinstance(e, FileNotFoundError) else f"failed: {e}"
                    out.append(f"plot {name!r} ({rev}): data file {src} {what}")
            for rev, e in r.definition_errors.items():
                out.append(f"plot {name!r} ({rev}): {e}")
            if r.source_errors or r.definition_errors:
                continue
            if not r.renderer.datapoints:
                out.append(f"plot {name!r}: no rows in {_sources(r.renderer)}")
                continue
            try:
                r.renderer.get_filled_template()
            except Exception as e:  # any template failure is a report line
                out.append(f"plot {name!r}: {e} (data: {_sources(r.renderer)})")
    return out


def _sources(renderer: Any) -> str:
    files = sorted(
        {str(d.get("filename", "?")) for d in renderer.datapoints}
        | {str(y.get("filename")) for y in renderer.properties.get("anchors_y_definitions", [])}
    )
    return ", ".join(f for f in files if f not in ("?", "None")) or renderer.name


def run(args: argparse.Namespace) -> None:
    found = problems(args.repo)
    for line in found:
        log.error("%s", line)
    if found:
        raise DermaiError(f"{len(found)} plot(s) cannot be drawn: {found[0]}")
    log.info("every plot has data")
    if args.check_only:
        return
    if args.out is None:  # DVC's own page folder
        _show(args.repo, [])
        return
    with output_dir(args.out, "dermai plots") as out:
        _show(args.repo, ["-o", str(out.staging.resolve())])


def _show(repo: str, extra: list[str]) -> None:
    from dvc.cli import main as dvc_main

    cwd = os.getcwd()
    try:
        os.chdir(repo)
        rc = dvc_main(["plots", "show", *extra])
    finally:
        os.chdir(cwd)
    if rc != 0:
        raise DermaiError(f"dvc plots show failed (exit {rc})")
