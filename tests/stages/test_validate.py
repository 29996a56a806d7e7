"""The data gates: a valid synthetic dataset passes; each kind of breakage fails, naming the
expectation that caught it. Runs the checked-in suites in expectations/.

GX is slow to import and to render Data Docs, so the valid run (with docs) is shared per module
and the breakage runs skip the docs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dermai.core import gates
from dermai.errors import DermaiError
from dermai.stages import validate
from dermai.validation import gate
from offline_browser import CHROMIUM, block_network

ROOT = Path(__file__).resolve().parents[2]
EXPECTATIONS = ROOT / "expectations"
INDEX_COLUMNS = [
    "image_id",
    "path",
    "condition",
    "age_group",
    "source",
    "group_id",
    "sha1",
    "dhash",
    "width",
    "height",
    "format",
    "bytes",
]
PARAMS = """\
base:
  classes: [akiec, bcc, bkl, df, mel, nv, vasc]
  age_edges: [30, 60]
split: {train: 0.8, val: 0.1, test: 0.1, min_groups_for_presence: 3}
validate: {size_rel_tolerance: 0.015, size_abs_tolerance: 3}
"""
N = 80  # -> 64 / 8 / 8 rows; size tolerance is the absolute 3 rows
Frames = dict[str, pd.DataFrame]


def image_id(i: int) -> str:
    return f"img{i:03d}"


def make_frames(n: int = N) -> Frames:
    """Valid data. Every 10th image (i % 10 == 9) is test, i % 10 == 8 is val, the rest train.

    Conditions cycle nv/mel/bcc so each is in every split; images 0-1 are one `df` lesion (one
    leakage group, below min_groups_for_presence, so df need not be in every split). Images 2-3
    are exact duplicates (same sha1), 4-5 a perceptual pair; each pair is one leakage group in
    train. Image 3 has an all-digit dhash, which must stay a 16-char string.
    """
    rows = []
    for i in range(n):
        iid = image_id(i)
        rows.append(
            {
                "image_id": iid,
                "path": f"images/{iid}.jpg",
                "condition": ["nv", "mel", "bcc"][i % 3],
                "age_group": ["0-29", "30-59", "60+", "unknown"][i % 4],
                "source": "synthetic",
                "group_id": "",
                "sha1": hashlib.sha1(iid.encode()).hexdigest(),
                "dhash": hashlib.md5(iid.encode()).hexdigest()[:16],
                "width": "100",
                "height": "75",
                "format": "JPEG",
                "bytes": str(1000 + i),
            }
        )
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    index.loc[[0, 1], ["condition", "group_id"]] = ["df", "lesion-1"]
    index.loc[3, "sha1"] = index.loc[2, "sha1"]
    index.loc[3, "dhash"] = "0000000000001234"
    groups = pd.DataFrame({"image_id": index["image_id"], "leakage_group": "G" + index["image_id"]})
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        groups.loc[b, "leakage_group"] = groups.loc[a, "leakage_group"]
    duplicates = pd.DataFrame(
        [
            {"a": image_id(2), "b": image_id(3), "kind": "exact", "distance": 0},
            {"a": image_id(4), "b": image_id(5), "kind": "perceptual", "distance": 3},
        ]
    )
    full = index.merge(groups, on="image_id")
    which = pd.Series(
        ["test" if i % 10 == 9 else "val" if i % 10 == 8 else "train" for i in range(n)]
    )
    frames = {"index": index, "groups": groups, "duplicates": duplicates}
    for s in ("train", "val", "test"):
        frames[s] = full[which == s].reset_index(drop=True)
    return frames


HELD_OUT = "siteX"


def make_external_frames(n: int = N) -> Frames:
    """Valid data with a held-out site: images i % 10 == 7 come from siteX and sit in the
    external split, and so does img016 (another source), which shares a leakage group with
    siteX's img017. 9 held out; the remaining 71 -> train 55, val 8, test 8."""
    frames = make_frames(n)
    site = [image_id(i) for i in range(n) if i % 10 == 7]
    for iid in site:
        set_value(frames, iid, "source", HELD_OUT)
    g = frames["groups"]
    g.loc[g["image_id"] == image_id(16), "leakage_group"] = "G" + image_id(17)
    frames["train"].loc[frames["train"]["image_id"] == image_id(16), "leakage_group"] = (
        "G" + image_id(17)
    )
    frames["external"] = frames["train"].iloc[:0]
    for iid in [*site, image_id(16)]:
        move(frames, iid, "external")
    return frames


def split_names(frames: Frames) -> tuple[str, ...]:
    return (
        ("train", "val", "test", "external") if "external" in frames else ("train", "val", "test")
    )


def write_dataset(root: Path, frames: Frames, *extra: str) -> argparse.Namespace:
    (root / "splits").mkdir(parents=True, exist_ok=True)
    params = PARAMS
    if "external" in frames:
        params = params.replace("presence: 3}", f"presence: 3, external_source: [{HELD_OUT}]}}")
    (root / "params.yaml").write_text(params)
    for name in ("index", "groups", "duplicates"):
        frames[name].to_csv(root / f"{name}.csv", index=False)
    for s in split_names(frames):
        frames[s].to_csv(root / "splits" / f"{s}.csv", index=False)
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    return parser.parse_args(
        [
            "--params",
            str(root / "params.yaml"),
            "--index",
            str(root / "index.csv"),
            "--groups",
            str(root / "groups.csv"),
            "--duplicates",
            str(root / "duplicates.csv"),
            "--splits",
            str(root / "splits"),
            "--expectations",
            str(EXPECTATIONS),
            "--out",
            str(root / "out"),
            *extra,
        ]
    )


def run_gate(root: Path, frames: Frames, build_docs: bool = True) -> dict:
    args = write_dataset(root, frames)
    return gate.validate(
        index_path=Path(args.index),
        groups_path=Path(args.groups),
        duplicates_path=Path(args.duplicates),
        splits_dir=Path(args.splits),
        expectations_dir=EXPECTATIONS,
        out_dir=Path(args.out),
        classes=["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
        age_groups=["0-29", "30-59", "60+", "unknown"],
        fractions={"train": 0.8, "val": 0.1, "test": 0.1},
        size_rel_tolerance=0.015,
        size_abs_tolerance=3,
        min_groups_for_presence=3,
        build_docs=build_docs,
    )


def move(frames: Frames, iid: str, dst: str) -> None:
    for s in split_names(frames):
        hit = frames[s]["image_id"] == iid
        if hit.any():
            row = frames[s][hit]
            frames[s] = frames[s][~hit].reset_index(drop=True)
            frames[dst] = pd.concat([frames[dst], row], ignore_index=True)
            return
    raise AssertionError(f"{iid} in no split")


def set_value(frames: Frames, iid: str, column: str, value: str) -> None:
    """Change a value in the index and in the split row, so the two still agree."""
    for name in ("index", *split_names(frames)):
        df = frames[name]
        df.loc[df["image_id"] == iid, column] = value


def suite_hashes() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(EXPECTATIONS.glob("*.json"))
    }


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, str]]:
    before = suite_hashes()
    root = tmp_path_factory.mktemp("valid")
    summary = run_gate(root, make_frames())
    return root / "out", summary, before


def test_valid_dataset_passes(valid_run: tuple[Path, dict, dict[str, str]]) -> None:
    out, summary, _ = valid_run
    failed = {
        f"{s}.{n}"
        for s, b in summary["suites"].items()
        for n, e in b["expectations"].items()
        if not e["success"]
    }
    assert summary["success"], failed
    assert json.loads((out / "passed.json").read_text())["gate"] == "passed"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["success"] is True
    assert on_disk["suites"]["splits"]["parameters"]["train_min_rows"] == 61
    # No held-out site: the external split must be empty, and is.
    assert on_disk["suites"]["splits"]["parameters"]["external_max_rows"] == 0
    assert on_disk["suites"]["splits"]["expectations"]["external_size"]["observed_value"] == 0
    assert on_disk["suites"]["splits"]["expectations"]["train_size"]["observed_value"] == 64
    # presence rows: nv/mel/bcc x 3 splits; df (one leakage group) is exempt
    assert (
        on_disk["suites"]["splits"]["expectations"]["condition_in_every_split"]["element_count"]
        == 9
    )


def test_held_out_site_passes_with_sizes_from_the_rest(tmp_path: Path) -> None:
    args = write_dataset(tmp_path, make_external_frames(), "--no-docs")
    validate.run(args)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["suites"]["splits"]
    p, e = summary["parameters"], summary["expectations"]
    assert (p["external_min_rows"], p["external_max_rows"]) == (9, 9)
    assert (p["train_min_rows"], p["train_max_rows"]) == (54, 59)  # 0.8 x 71 +- 3
    assert e["external_size"]["observed_value"] == 9 and e["train_size"]["observed_value"] == 55
    assert e["held_out_site_in_external"]["element_count"] == 9
    # external joins the cross-split checks; presence is not required there.
    assert e["cross_split_leakage_group"]["success"]
    assert e["condition_in_every_split"]["element_count"] == 9


def test_unknown_held_out_source_is_one_line_error(tmp_path: Path) -> None:
    frames = make_external_frames()
    set_value(frames, image_id(7), "source", "synthetic")
    frames["index"]["source"] = frames["index"]["source"].replace(HELD_OUT, "synthetic")
    args = write_dataset(tmp_path, frames, "--no-docs")
    with pytest.raises(DermaiError, match=r"not in the index: siteX; sources in the index: synth"):
        validate.run(args)


def test_full_results_written_without_volatile_fields(
    valid_run: tuple[Path, dict, dict[str, str]],
) -> None:
    out, _, _ = valid_run
    for name in ("index", "splits"):
        result = json.loads((out / f"{name}.json").read_text())
        assert result["suite_name"] == name
        assert "run_id" not in result["meta"] and "validation_time" not in result["meta"]
        assert all("id" not in r["expectation_config"] for r in result["results"])
        names = [r["expectation_config"]["meta"]["name"] for r in result["results"]]
        suite = json.loads((EXPECTATIONS / f"{name}.json").read_text())
        assert names == [e["meta"]["name"] for e in suite["expectations"]]


def test_same_input_gives_same_result_bytes(
    valid_run: tuple[Path, dict, dict[str, str]],
    tmp_path: Path,
) -> None:
    out, _, _ = valid_run
    run_gate(tmp_path, make_frames(), build_docs=False)
    for name in ("index.json", "splits.json", "summary.json", "passed.json"):
        assert (tmp_path / "out" / name).read_bytes() == (out / name).read_bytes(), name


def test_data_docs_built_and_navigable_offline(
    valid_run: tuple[Path, dict, dict[str, str]],
) -> None:
    out, _, _ = valid_run
    docs = out / "docs"
    index_html = (docs / "index.html").read_text()
    validations = sorted(docs.glob("validations/**/*.html"))
    assert len(validations) == 2
    # GX's own run table needs CDN JavaScript; the static list links every page locally.
    for page in [*validations, *docs.glob("expectations/*.html")]:
        assert f'href="{page.relative_to(docs).as_posix()}"' in index_html
    assert not list(out.glob(".docs-*")), "temp docs dir left behind"


LOADS_FROM_NETWORK = re.compile(
    r"<(?:script|img)[^>]*\ssrc=\"(?:https?:)?//|<link[^>]*\shref=\"(?:https?:)?//", re.I
)


def test_data_docs_load_nothing_from_the_network(
    valid_run: tuple[Path, dict, dict[str, str]],
) -> None:
    """Every CDN file the pages load is vendored (validation/docs_vendor) with its licence."""
    out, _, _ = valid_run
    docs = out / "docs"
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) >= 5
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not LOADS_FROM_NETWORK.search(html), (page, LOADS_FROM_NETWORK.search(html))
        assert "static/vendor/css/all.min.css" in html and "integrity=" not in html, page
    vendor = docs / "static" / "vendor"
    assert (vendor / "webfonts" / "fa-solid-900.woff2").is_file()
    assert {p.name for p in (vendor / "LICENSES").iterdir()} >= {"bootstrap", "jquery"}


# A Status cell's icon: present, drawn from the vendored Font Awesome font, of non-zero size.
ICONS = """() => Array.from(document.querySelectorAll('td i.fas')).map(i => {
  const before = getComputedStyle(i, '::before');
  const box = i.getBoundingClientRect();
  return {cls: i.className, glyph: before.content, font: before.fontFamily,
          color: getComputedStyle(i).color, w: box.width, h: box.height};
})"""


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (make browser-deps)")
def test_data_docs_styled_with_status_icons_offline_in_chromium(
    valid_run: tuple[Path, dict, dict[str, str]], tmp_path: Path
) -> None:
    """The pages in headless Chromium with every non-file request refused: Bootstrap styles
    them, and each Status cell shows a drawn icon, a green check for a passed expectation and a
    red cross for a failed one (a gate broken on purpose). Screenshots: DERMAI_DOCS_SHOTS."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    out, _, _ = valid_run
    broken = make_frames()
    _dup_into_test(broken)
    run_gate(tmp_path, broken)
    failed_page = next((tmp_path / "out/docs/validations/splits").rglob("*.html"))
    passed_page = next((out / "docs/validations/index").rglob("*.html"))
    shots = Path(os.environ.get("DERMAI_DOCS_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    blocked: list[str] = []
    problems: list[str] = []
    found = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            ctx = browser.new_context(viewport={"width": 1300, "height": 900})
            block_network(ctx, blocked)
            for name, page_file in (
                ("index", out / "docs/index.html"),
                ("passed", passed_page),
                ("failed", failed_page),
            ):
                page = ctx.new_page()
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.goto(page_file.as_uri())
                page.wait_for_load_state("load")
                page.evaluate("document.fonts.ready.then(() => true)")
                found[name] = {
                    "icons": page.evaluate(ICONS),
                    "navbar": page.evaluate(
                        "getComputedStyle(document.querySelector('nav.navbar')).display"
                    ),
                    "font_loaded": page.evaluate(
                        "document.fonts.check('900 16px \"Font Awesome 6 Free\"')"
                    ),
                }
                page.screenshot(path=str(shots / f"data-docs-{name}.png"))
                page.close()
        finally:
            browser.close()
    assert blocked == [], f"the pages asked the network for {blocked}"
    assert [m for m in problems if "favicon" not in m] == []
    for name, got in found.items():
        assert got["navbar"] == "flex", (name, got)  # Bootstrap's .navbar, i.e. styled
    for name, want in (("passed", {"fa-check-circle"}), ("failed", {"fa-times"})):
        icons = found[name]["icons"]
        assert icons and found[name]["font_loaded"], (name, icons)
        for icon in icons:
            assert icon["glyph"] not in ("none", "normal", '""'), icon
            assert "Font Awesome" in icon["font"] and icon["w"] > 5 and icon["h"] > 5, icon
        kinds = {c for i in icons for c in i["cls"].split() if c in ("fa-check-circle", "fa-times")}
        assert want <= kinds, (name, kinds)
    reds = [i for i in found["failed"]["icons"] if "fa-times" in i["cls"]]
    assert all(i["color"] == "rgb(220, 53, 69)" for i in reds), reds  # Bootstrap's text-danger


def test_suite_files_not_modified(valid_run: tuple[Path, dict, dict[str, str]]) -> None:
    _, _, before = valid_run
    assert suite_hashes() == before


def _dup_into_test(f: Frames) -> None:
    move(f, image_id(3), "test")  # exact copy of image 2 (train)


def _lesion_across(f: Frames) -> None:
    move(f, image_id(1), "val")  # same leakage group as image 0 (train), different sha1


def _wrong_sizes(f: Frames) -> None:
    for i in range(10, 20):
        if i % 10 < 8:
            move(f, image_id(i), "test")


def _unknown_label(f: Frames) -> None:
    set_value(f, image_id(10), "condition", "melanoma")


def _missing_image(f: Frames) -> None:
    f["train"] = f["train"][f["train"]["image_id"] != image_id(20)]


def _perceptual_across(f: Frames) -> None:
    extra = {"a": image_id(6), "b": image_id(9), "kind": "perceptual", "distance": 4}
    f["duplicates"] = pd.concat([f["duplicates"], pd.DataFrame([extra])], ignore_index=True)


def _condition_missing(f: Frames) -> None:
    for iid in f["val"].loc[f["val"]["condition"] == "bcc", "image_id"]:
        set_value(f, iid, "condition", "nv")


def _bad_sha1(f: Frames) -> None:
    set_value(f, image_id(7), "sha1", "XYZ")


def _stale_split_row(f: Frames) -> None:
    f["test"].loc[0, "leakage_group"] = "G-stale"


def _patient_across(f: Frames) -> None:
    # One patient in train (img010) and test (img019); groups.csv did not join them.
    for i in (10, 19):
        set_value(f, image_id(i), "groups", f"lesion_id=L{i};patient_id=P1")


def _image_twice(f: Frames) -> None:
    f["val"] = pd.concat([f["val"], f["train"].iloc[[10]]], ignore_index=True)


def _unindexed_split_row(f: Frames) -> None:
    stray = f["val"].iloc[[0]].assign(image_id="img999", path="images/img999.jpg")
    f["val"] = pd.concat([f["val"], stray], ignore_index=True)


def _held_out_image_trained_on(f: Frames) -> None:
    f.update(make_external_frames())
    move(f, image_id(27), "train")  # a siteX image back in training


def _group_partner_not_held_out(f: Frames) -> None:
    f.update(make_external_frames())
    move(f, image_id(16), "train")  # shares img017's (siteX) leakage group


def _val_too_small(f: Frames) -> None:
    for i, dst in [(8, "train"), (18, "train"), (28, "test"), (38, "test")]:
        move(f, image_id(i), dst)  # val 8 -> 4 rows; train 66, test 10 stay within bounds


BREAKAGES: list[tuple[str, Callable[[Frames], None], list[str], list[str]]] = [
    (
        "held_out_site_image_in_train",
        _held_out_image_trained_on,
        [
            "splits.held_out_site_in_external (1 unexpected)",
            "splits.external_size (observed 8, expected 9..9)",
        ],
        ["splits.cross_split", "splits.train_size"],
    ),
    (
        "group_partner_of_held_out_site_in_train",
        _group_partner_not_held_out,
        [
            "splits.held_out_site_in_external (1 unexpected)",
            "splits.cross_split_leakage_group (2 unexpected)",
            "splits.external_size (observed 8, expected 9..9)",
        ],
        ["splits.cross_split_sha1", "splits.train_size"],
    ),
    # id, mutation, expectations that must be named, expectations that must not
    (
        "duplicate_sha1_in_test",
        _dup_into_test,
        ["splits.cross_split_sha1 (2 unexpected)", "splits.cross_split_leakage_group"],
        ["splits.test_size"],
    ),
    (
        "lesion_across_splits",
        _lesion_across,
        ["splits.cross_split_leakage_group (2 unexpected)"],
        ["splits.cross_split_sha1"],
    ),
    (
        "wrong_sizes",
        _wrong_sizes,
        [
            "splits.train_size (observed 56, expected 61..67)",
            "splits.test_size (observed 16, expected 5..11)",
        ],
        ["splits.cross_split"],
    ),
    ("unknown_label", _unknown_label, ["index.condition_in_set (1 unexpected)"], ["splits."]),
    (
        "image_missing_from_splits",
        _missing_image,
        ["splits.image_in_a_split (1 unexpected)"],
        ["index."],
    ),
    (
        "perceptual_pair_across_splits",
        _perceptual_across,
        ["splits.cross_split_perceptual_pair (2 unexpected)"],
        ["splits.cross_split_sha1"],
    ),
    (
        "condition_missing_from_split",
        _condition_missing,
        ["splits.condition_in_every_split (1 unexpected)"],
        ["index."],
    ),
    ("malformed_sha1", _bad_sha1, ["index.sha1_format (1 unexpected)"], []),
    (
        "split_row_disagrees_with_groups",
        _stale_split_row,
        ["splits.row_matches_index (1 unexpected)"],
        [],
    ),
    ("image_in_two_splits", _image_twice, ["splits.image_in_one_split (2 unexpected)"], []),
    (
        "patient_across_splits",
        _patient_across,
        ["splits.cross_split_metadata_group (2 unexpected)"],
        ["splits.cross_split_leakage_group"],
    ),
    # a row naming no indexed image cannot match its index row either
    (
        "split_row_not_in_index",
        _unindexed_split_row,
        ["splits.image_in_index (1 unexpected)", "splits.row_matches_index (1 unexpected)"],
        ["index.", "splits.val_size"],
    ),
    (
        "val_too_small",
        _val_too_small,
        ["splits.val_size (observed 4, expected 5..11)"],
        ["splits.train_size", "splits.test_size", "splits.condition_in_every_split"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "named", "not_named"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_breakage_fails_gate_naming_expectation(
    tmp_path: Path,
    mutate: Callable[[Frames], None],
    named: list[str],
    not_named: list[str],
) -> None:
    frames = make_frames()
    mutate(frames)
    args = write_dataset(tmp_path, frames, "--no-docs")
    with pytest.raises(DermaiError) as info:
        validate.run(args)
    message = str(info.value)
    assert message.startswith("gate failed: ") and "\n" not in message
    for name in named:
        assert name in message
    for name in not_named:
        assert name not in message
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text())["success"] is False
    assert (out / "index.json").is_file() and (out / "splits.json").is_file()
    assert not (out / "passed.json").exists()


def test_missing_contract_column_is_named(tmp_path: Path) -> None:
    frames = make_frames()
    frames["index"] = frames["index"].drop(columns=["dhash"])
    summary = run_gate(tmp_path, frames, build_docs=False)
    columns = summary["suites"]["index"]["expectations"]["columns"]
    assert not columns["success"] and columns["mismatched"]["missing"] == ["dhash"]
    from dermai.core.gates import gate_message

    assert "index.columns (missing dhash)" in gate_message(summary)


def test_stale_pass_marker_removed_on_failure(tmp_path: Path) -> None:
    frames = make_frames()
    assert run_gate(tmp_path, frames, build_docs=False)["success"]
    assert (tmp_path / "out" / "passed.json").exists()
    _dup_into_test(frames)
    assert not run_gate(tmp_path, frames, build_docs=False)["success"]
    assert not (tmp_path / "out" / "passed.json").exists()


def test_missing_input_is_one_line_error(tmp_path: Path) -> None:
    args = write_dataset(tmp_path, make_frames())
    (tmp_path / "splits" / "val.csv").unlink()
    with pytest.raises(DermaiError, match=r"split val not found: .*val\.csv"):
        validate.run(args)


_NO_NETWORK_RUNNER = """
import socket, sys
def _refuse(*args, **kwargs):
    sys.stderr.write("NETWORK ATTEMPT %r\\n" % (args[1:2] or args[:1],))
    raise OSError("network disabled in test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
from dermai.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(600)  # above the subprocess's own 300 s limit, so that one reports first
def test_cli_offline_quiet_and_home_untouched(tmp_path: Path) -> None:
    """Subprocess, so GX is imported fresh with HOME pointing at an empty dir."""
    frames = make_frames()
    _dup_into_test(frames)
    args = write_dataset(tmp_path / "data", frames)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GX_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT / "src"))
    argv = [
        "validate",
        "--params",
        args.params,
        "--index",
        args.index,
        "--groups",
        args.groups,
        "--duplicates",
        args.duplicates,
        "--splits",
        args.splits,
        "--expectations",
        args.expectations,
        "--out",
        args.out,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK_RUNNER, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "NETWORK ATTEMPT" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [line for line in errors if line.startswith("dermai validate: error: ")]
    assert len(errors) == 1 and "splits.cross_split_sha1 (2 unexpected)" in errors[0]
    assert "Calculating Metrics" not in proc.stderr  # GX progress bars off
    assert list(home.iterdir()) == []
    assert list(cwd.iterdir()) == []
    assert (Path(args.out) / "docs" / "index.html").is_file()
    assert not (Path(args.out) / "passed.json").exists()


def test_gx_not_imported_by_module_import_or_help() -> None:
    code = (
        "import sys; import dermai.stages.validate; from dermai.cli import build_parser; "
        "build_parser(); print('great_expectations' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=120,
    )
    assert proc.stdout.strip() == "False", proc.stderr


def test_crash_leaves_no_previous_summary(tmp_path: Path) -> None:
    """A run that dies on an unreadable CSV must not leave the last run's "success": true."""
    frames = make_frames()
    assert run_gate(tmp_path, frames, build_docs=False)["success"]
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text())["success"] is True
    args = write_dataset(tmp_path, frames)
    Path(args.index).write_bytes(b"\x00\xff\xfe not a csv \x00\n\x01")
    with pytest.raises(Exception):  # noqa: B017 -- any failure; the point is what is left
        gate.validate(
            index_path=Path(args.index),
            groups_path=Path(args.groups),
            duplicates_path=Path(args.duplicates),
            splits_dir=Path(args.splits),
            expectations_dir=EXPECTATIONS,
            out_dir=out,
            classes=["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
            age_groups=["0-29", "30-59", "60+", "unknown"],
            fractions={"train": 0.8, "val": 0.1, "test": 0.1},
            size_rel_tolerance=0.015,
            size_abs_tolerance=3,
            min_groups_for_presence=3,
            build_docs=False,
        )
    assert not (out / "summary.json").exists() and not (out / "passed.json").exists()


def suite_names(suite: str) -> list[str]:
    return [
        e["meta"]["name"]
        for e in json.loads((EXPECTATIONS / f"{suite}.json").read_text())["expectations"]
    ]


def test_every_splits_expectation_has_a_breakage_that_names_it() -> None:
    named = {n.split(" ")[0] for b in BREAKAGES for n in b[2]}
    assert {f"splits.{n}" for n in suite_names("splits")} <= named


def _drop_group_id(f: Frames) -> None:
    for name in ("index", "train", "val", "test"):
        f[name] = f[name].drop(columns=["group_id"])


def _null(column: str) -> Callable[[Frames], None]:
    def mutate(f: Frames) -> None:
        set_value(f, image_id(10), column, "")  # an empty CSV field is read as null

    return mutate


def _null_image_id(f: Frames) -> None:
    f["index"].loc[10, "image_id"] = ""
    f["train"] = f["train"][f["train"]["image_id"] != image_id(10)]


def _repeated_image_id(f: Frames) -> None:
    f["index"] = pd.concat([f["index"], f["index"].iloc[[10]]], ignore_index=True)


# One breakage of the index table per expectation in expectations/index.json, each made so that
# it is the only expectation of either suite that fails (split rows are changed along with the
# index where a value is changed, so the splits suite still agrees with the index).
INDEX_BREAKAGES: dict[str, Callable[[Frames], None]] = {
    "columns": _drop_group_id,  # the one contract column no other expectation reads
    "image_id_not_null": _null_image_id,
    **{
        f"{c}_not_null": _null(c)
        for c in (
            "path",
            "condition",
            "age_group",
            "source",
            "sha1",
            "dhash",
            "width",
            "height",
            "format",
            "bytes",
        )
    },
    "image_id_unique": _repeated_image_id,
    "sha1_format": lambda f: set_value(f, image_id(7), "sha1", "XYZ"),
    "dhash_format": lambda f: set_value(f, image_id(7), "dhash", "0123456789abcdeG"),
    "condition_in_set": lambda f: set_value(f, image_id(10), "condition", "melanoma"),
    "age_group_in_set": lambda f: set_value(f, image_id(10), "age_group", "elderly"),
}


def test_every_index_expectation_has_a_breakage() -> None:
    assert sorted(INDEX_BREAKAGES) == sorted(suite_names("index"))


@pytest.mark.parametrize("name", list(INDEX_BREAKAGES))
def test_index_breakage_fails_exactly_its_expectation(tmp_path: Path, name: str) -> None:
    frames = make_frames()
    INDEX_BREAKAGES[name](frames)
    summary = run_gate(tmp_path, frames, build_docs=False)
    failed = {
        f"{s}.{n}"
        for s, b in summary["suites"].items()
        for n, e in b["expectations"].items()
        if not e["success"]
    }
    assert failed == {f"index.{name}"}
    assert name in suite_names("index")  # the expectation is still in the checked-in suite


def fold_table(frames: Frames, k: int = 3) -> pd.DataFrame:
    """Valid folds over make_frames' images: fold = the group leader's number // 3 mod k (groups
    whole), with the fold file's columns taken from the index and groups."""
    full = frames["index"].merge(frames["groups"], on="image_id")
    leader = full.groupby("leakage_group")["image_id"].transform("min")
    return pd.DataFrame(
        {
            "image_id": full["image_id"],
            "fold": leader.str[3:].astype(int) // 3 % k,
            "leakage_group": full["leakage_group"],
            "condition": full["condition"],
            "age_group": full["age_group"],
        }
    )


def fold_gate(root: Path, folds: pd.DataFrame) -> dict:
    (root / "splits").mkdir(parents=True, exist_ok=True)
    folds.to_csv(root / "splits" / "folds.csv", index=False)
    return run_gate(root, make_frames(), build_docs=False)


def test_valid_folds_pass_the_folds_suite(tmp_path: Path) -> None:
    summary = fold_gate(tmp_path, fold_table(make_frames()))
    assert summary["success"], gates.gate_message(summary)
    body = summary["suites"]["folds"]
    assert body["n_passed"] == body["n_expectations"] == 10
    assert json.loads((tmp_path / "out" / "passed.json").read_text())["suites"] == [
        "index",
        "splits",
        "folds",
    ]


@pytest.mark.parametrize(
    ("name", "breakage"),
    [
        # img001 shares df lesion-1 (and leakage group) with img000, in fold 0
        ("cross_fold_leakage_group", lambda f: f.assign(fold=f["fold"].mask(f.index == 1, 1))),
        ("image_in_a_fold", lambda f: f[f["image_id"] != image_id(7)]),
        ("image_held_out_once", lambda f: pd.concat([f, f.iloc[[9]].assign(fold=2)])),
        (
            "condition_in_every_fold",
            lambda f: f.assign(fold=f["fold"].mask(f["condition"] == "mel", 0)),
        ),
        (
            "row_matches_index",
            lambda f: f.assign(condition=f["condition"].mask(f.index == 9, "bcc")),
        ),
    ],
)
def test_fold_breakage_fails_the_folds_suite(
    tmp_path: Path, name: str, breakage: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    summary = fold_gate(tmp_path, breakage(fold_table(make_frames())))
    assert not summary["success"]
    failed = [n for n, e in summary["suites"]["folds"]["expectations"].items() if not e["success"]]
    assert name in failed, failed
    assert all(e["success"] for e in summary["suites"]["splits"]["expectations"].values())
