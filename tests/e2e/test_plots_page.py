"""The `dvc plots show` page in headless Chromium with every network request blocked.

Renders the committed sample plot data (and the same charts for a made-up class set, so no
class name is hard-coded anywhere) and fails on any chart that is blank: each Vega view
must have its data rows and drawn SVG marks of non-zero size. Screenshots of every chart go
to reports/plots/ (override with DERMAI_PLOT_SHOTS) for a person to look at. A missing data
file must be named by `dermai plots` and shown as an error on the page, never left blank.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dermai.core import plotdata
from dermai.core.evaluation import calibration_report
from offline_browser import CHROMIUM, block_network

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVAL = "dvclive/evaluate/plots/custom"
TRAIN = "dvclive/train/plots/custom/training.json"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


def copy_project(dst: Path) -> Path:
    """The files `dvc plots show` reads, in a fresh git repo (the real one is not touched)."""
    for f in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    shutil.copytree(ROOT / ".dvc/plots", dst / ".dvc/plots")
    shutil.copytree(ROOT / "dvclive", dst / "dvclive", ignore=shutil.ignore_patterns("*.tsv"))
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def write_made_up_classes(dst: Path, classes: list[str], seed: int = 3) -> None:
    """Plot data for a class set that is not HAM10000's, made by the same functions."""
    import json

    rng = np.random.default_rng(seed)
    n, k = 150, len(classes)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y, proba.argmax(axis=1)), 1)
    cal = calibration_report(y, logits, temperature=1.3, bins=10)
    for split in ("test", "val"):
        out = dst / EVAL / split
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name, rows in (
            ("confusion", plotdata.confusion_rows(m.tolist(), classes)),
            ("roc", plotdata.roc_rows(y, proba, classes)),
            ("precision_recall", plotdata.pr_rows(y, proba, classes)),
            ("reliability", plotdata.reliability_rows(cal)),
        ):
            (out / f"{name}.json").write_text(json.dumps(rows))


def dermai_plots(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "dermai.cli", "plots", "--repo", str(repo), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def dvc_plots_show(repo: Path) -> Path:
    """Plain `dvc plots show` (no flags): the page comes from the config's html_template."""
    dvc = Path(sys.executable).with_name("dvc")
    subprocess.run(
        [str(dvc), "plots", "show"], cwd=repo, check=True, capture_output=True, timeout=300
    )
    return repo / "dvc_plots" / "index.html"


# Per chart: rows in its data, drawn SVG marks, and the size of its SVG.
PROBE = """() => {
  const out = {};
  for (const [el, view] of Object.entries(window.dermaiViews)) {
    const svg = document.querySelector(el + ' svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    let rows = 0;
    try { rows = view.data('source_0').length; } catch (e) { rows = -1; }
    const marks = svg ? svg.querySelectorAll(
      'g.mark-line path, g.mark-rect path, g.mark-symbol path, g.mark-text text').length : 0;
    const legend = Array.from(document.querySelectorAll(el + ' g.role-legend text'))
      .map(t => t.textContent);
    const all = (sel) => svg ? Array.from(svg.querySelectorAll(sel)) : [];
    const texts = all('g.mark-text text').map(t => [t.textContent, t.getAttribute('fill')]);
    // facet headers: a title inside a facet cell (wrapped facets) or a column/row header
    const headers = all('g.role-title text.role-title-text, g.role-title .role-title-text')
      .filter(t => {
        const g = t.closest('g.role-title').parentElement.closest('g.mark-group');
        const cls = g ? g.getAttribute('class') : '';
        return /(^| )(cell|role-column-header|role-row-header)( |$)/.test(cls);
      })
      .map(t => t.textContent);
    const strokes = Array.from(new Set(all('g.mark-line path').map(p => p.getAttribute('stroke'))));
    const symbols = all('g.role-legend-symbol path').map(p => p.getAttribute('fill'));
    // matrix cells drawn (rect marks outside the legends)
    const rects = all('g.mark-rect path').filter(p => !p.closest('g.role-legend')).length;
    out[el] = {rows, marks, width: box.width, height: box.height, legend, texts, headers,
               strokes, symbols, rects};
  }
  const errors = Array.from(document.querySelectorAll('[data-plot-error]'))
    .map(d => '#' + d.id + ': ' + d.getAttribute('data-plot-error'));
  const divs = Array.from(document.querySelectorAll('.plots > div[id]')).map(d => '#' + d.id);
  return {charts: out, errors, divs};
}"""


def render(page_file: Path, shots: Path | None) -> dict:
    """Open the page offline, wait for every chart, return PROBE's answer."""
    blocked: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            ctx = b.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)

            block_network(ctx, blocked)
            page = ctx.new_page()
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(page_file.as_uri())
            page.wait_for_function(
                "document.readyState === 'complete' && window.dermaiPending === 0", timeout=60_000
            )
            result = page.evaluate(PROBE)
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                for el in result["divs"]:
                    page.locator(el).screenshot(path=str(shots / f"{el[1:]}.png"))
        finally:
            b.close()
    result["blocked"] = blocked
    result["problems"] = problems
    return result


def assert_all_drawn(result: dict, n_charts: int) -> None:
    assert result["blocked"] == [], f"the page asked the network for {result['blocked']}"
    assert result["problems"] == []
    assert result["errors"] == []
    assert len(result["divs"]) == n_charts
    assert sorted(result["charts"]) == sorted(result["divs"]), "a chart was never drawn"
    for el, c in result["charts"].items():
        assert c["rows"] > 0, f"{el}: no data rows"
        assert c["marks"] > 0, f"{el}: nothing drawn"
        assert c["width"] > 100 and c["height"] > 100, f"{el}: {c['width']}x{c['height']}"


def n_plots() -> int:
    return len(yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"])


def test_sample_plots_render_offline_with_readable_legends(tmp_path):
    repo = copy_project(tmp_path)
    done = dermai_plots(repo, "--check-only")
    assert done.returncode == 0, done.stderr
    shots = Path(os.environ.get("DERMAI_PLOT_SHOTS", ROOT / "reports" / "plots"))
    result = render(dvc_plots_show(repo), shots)
    assert_all_drawn(result, n_plots())
    charts = result["charts"]
    classes = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]["classes"]
    roc = charts["#test_roc"]
    assert roc["headers"] == classes  # one panel per class, in the class order
    auc = [t for t, _ in roc["texts"] if t.startswith("AUC ")]
    assert len(auc) == len(classes) and all(t.endswith(" workspace") for t in auc), auc
    assert not any(".json" in t for t in roc["legend"])
    assert any("ECE" in t for t, _ in charts["#test_reliability"]["texts"])
    assert {"train", "validation", "workspace"} <= set(charts["#training_curves"]["legend"])


def test_any_class_set_renders(tmp_path):
    repo = copy_project(tmp_path)
    classes = ["alpha", "beta", "gamma"]
    write_made_up_classes(repo, classes)
    result = render(dvc_plots_show(repo), None)
    assert_all_drawn(result, n_plots())
    assert result["charts"]["#test_roc"]["headers"] == classes
    assert result["charts"]["#test_precision_recall"]["headers"] == classes


def test_a_missing_data_file_is_named_and_never_a_blank_chart(tmp_path):
    repo = copy_project(tmp_path)
    gone = f"{EVAL}/test/roc.json"
    (repo / gone).unlink()
    done = dermai_plots(repo)
    assert done.returncode != 0
    assert gone in done.stderr.strip().splitlines()[-1]
    assert not (repo / "dvc_plots").exists()  # no page with a hole in it
    # Plain `dvc plots show` still writes the page: the chart shows an error, not a blank box.
    result = render(dvc_plots_show(repo), None)
    assert [e for e in result["errors"] if e.startswith("#test_roc:")], result["errors"]


def another_training(repo: Path) -> None:
    """The training chart's data as a second experiment might leave it: other values and the
    kept epoch one step earlier, so its markers do not coincide with the first one's."""
    import json

    path = repo / TRAIN
    rows = json.loads(path.read_text())
    kept = min(r["step"] for r in rows if r["kept"])
    for r in rows:
        r["value"] = round(r["value"] * 0.9, 5)
        r["kept"] = r["step"] == max(kept - 1, 0)
    path.write_text(json.dumps(rows))


def test_plots_diff_of_two_experiments_tells_them_apart(tmp_path):
    """`dvc plots diff A B`: one colour per revision, named in a legend, on every line chart;
    kept-epoch markers and AUC/AP/ECE labels per revision; the confusion matrices side by side,
    one column per revision. Screenshots go to DERMAI_PLOT_DIFF_SHOTS (default: tmp)."""
    from pipeline import sh

    repo = copy_project(tmp_path / "repo")
    classes = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]["classes"]
    revs = ["exp-a", "exp-b"]
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "a", cwd=repo)
    sh("git", "tag", revs[0], cwd=repo)
    write_made_up_classes(repo, classes, seed=5)
    another_training(repo)
    sh("git", "commit", "-qam", "b", cwd=repo)
    sh("git", "tag", revs[1], cwd=repo)
    sh("dvc", "plots", "diff", *revs, "-o", "diff", cwd=repo)

    shots = Path(os.environ.get("DERMAI_PLOT_DIFF_SHOTS", tmp_path / "shots"))
    result = render(repo / "diff" / "index.html", shots)
    assert_all_drawn(result, n_plots())
    for el, c in result["charts"].items():
        assert (shots / f"{el[1:]}.png").stat().st_size > 5000, el
        if "confusion" in el:  # counts, then shares: each one matrix per revision, in order
            assert c["headers"] == revs * 2, (el, c["headers"])
            assert c["rects"] == 2 * 2 * len(classes) ** 2, el  # 2 revisions x (counts, shares)
            continue
        assert set(revs) <= set(c["legend"]), (el, c["legend"])
        lines = set(c["strokes"]) - {"#999"}
        assert len(lines) == 2, (el, c["strokes"])  # one colour per revision, none shared
        legend_colours = {f for f in c["symbols"] if f not in ("transparent", "black", None)}
        assert legend_colours == lines, (el, c["symbols"], lines)
    charts = result["charts"]
    kept = [fill for t, fill in charts["#training_curves"]["texts"] if t == "kept"]
    assert len(kept) == 2 * 4 and len(set(kept)) == 2  # per revision, in each metric's panel
    for el, word in (("#test_roc", "AUC "), ("#test_precision_recall", "AP ")):
        labels = [(t, f) for t, f in charts[el]["texts"] if t.startswith(word)]
        assert len(labels) == 2 * len(classes), labels
        assert {t.rsplit(" ", 1)[1] for t, _ in labels} == set(revs)
        assert len({f for _, f in labels}) == 2
    ece = [t for t, _ in charts["#test_reliability"]["texts"] if "ECE" in t]
    assert sorted(t.split(":")[0] for t in ece) == sorted(revs * 2), ece
