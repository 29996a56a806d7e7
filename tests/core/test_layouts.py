"""Matching listed ids to walked files: every id and every file accounted for exactly once."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dermai.core import layouts
from dermai.core.groups import leakage_components, parse_groups
from dermai.core.labels import check_repeats

EXTS = {".jpg", ".png"}


def test_file_id_strips_extension_and_known_suffix():
    assert layouts.file_id("a/ISIC_1_downsampled.jpg", ["_downsampled"]) == "ISIC_1"
    assert layouts.file_id("ISIC_1.JPG", ["_downsampled"]) == "ISIC_1"
    assert layouts.file_id("x_downsampled.jpg", []) == "x_downsampled"


def test_check_repeats_collapses_identical_and_flags_conflicts():
    rep = check_repeats(["a", "b", "a", "c", "b"], ["nv", "mel", "nv", "nv", "nv"])
    assert rep.keep == {"a": 0, "c": 3} and rep.repeats == {"a": 2}
    assert rep.conflicts == {"b": ["mel", "nv"]}


ids = st.sampled_from([f"I{k}" for k in range(8)])


@settings(max_examples=200, deadline=None)
@given(
    listed=st.lists(st.tuples(ids, st.sampled_from(["nv", "mel"])), max_size=12),
    files=st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2"]),
            ids,
            st.sampled_from(["", "_downsampled"]),
            st.sampled_from([".jpg", ".png", ".txt"]),
        ),
        max_size=12,
        unique=True,
    ),
)
def test_match_accounts_for_every_id_and_file_once(listed, files):
    rows = [layouts.Task(path="", image_id=i, raw_label=lab, condition=lab) for i, lab in listed]
    paths = [f"{d}/{i}{s}{e}" for d, i, s, e in files]
    tasks = layouts.match(rows, paths, EXTS, ["_downsampled"])
    # every walked file exactly once
    assert sorted(t.path for t in tasks if t.path) == sorted(paths)
    # every distinct listed id exactly once (a conflict or a kept row), unless only its
    # extra files appear; ids whose files all exist appear once per file
    listed_ids = {i for i, _ in listed}
    by_id: dict[str, int] = {}
    for t in tasks:
        if t.image_id in listed_ids and not t.reject.startswith("second file"):
            by_id[t.image_id] = by_id.get(t.image_id, 0) + 1
    assert by_id == dict.fromkeys(listed_ids, 1)
    # brute force: the accepted rows are exactly the non-conflicting listed ids with a file
    labels: dict[str, set[str]] = {}
    for i, lab in listed:
        labels.setdefault(i, set()).add(lab)
    have = {layouts.file_id(p, ["_downsampled"]) for p in paths if p[-4:] in EXTS}
    ok = {t.image_id for t in tasks if not t.reject}
    assert ok == {i for i, labs in labels.items() if len(labs) == 1 and i in have}


def test_records_onehot_and_extra_table_join():
    preset = layouts.PRESETS["isic2019"]
    gt = pd.DataFrame(
        {"image": ["A", "B", "C"], "MEL": ["1.0", "0.0", "1.0"], "NV": ["0.0", "0.0", "1.0"]}
    )
    meta = pd.DataFrame({"image": ["A", "B"], "age_approx": ["40", ""], "lesion_id": ["L1", ""]})
    rows = layouts.records(preset, gt, meta, [], [30, 60])
    assert [(r.image_id, r.raw_label, r.age_group, r.groups, r.reject[:4]) for r in rows] == [
        ("A", "mel", "30-59", "lesion_id=L1", ""),
        ("B", "", "unknown", "", "no c"),
        ("C", "", "unknown", "", "more"),
    ]


def test_apply_labels_order_map_drop_and_filters():
    ages = {"0-29", "unknown"}
    t = layouts.Task(
        path="x.jpg", image_id="x", raw_label="SCC", age_group="unknown", image_type="clinical"
    )
    assert layouts.apply_labels(t, [], {"scc": "bcc"}, [], ages).condition == "bcc"
    assert layouts.apply_labels(t, [], {"SCC": "drop"}, [], ages).drop == "class_map"
    assert layouts.apply_labels(t, [], {}, ["dermoscopic"], ages).drop == "image_type"
    assert "not in configured classes" in layouts.apply_labels(t, ["nv"], {}, [], ages).reject
    assert layouts.resolve_classes([], ["nv", "mel", "nv"]) == ["mel", "nv"]
    assert layouts.resolve_classes(["b", "a"], ["x"]) == ["b", "a"]


def test_groups_from_several_keys_union_without_mixing_keys():
    cells = [
        "lesion_id=L1;patient_id=P1",
        "lesion_id=L2;patient_id=P1",
        "lesion_id=L3",
        "patient_id=L3",
        "",
    ]
    keys = parse_groups(cells)
    assert keys == {
        "lesion_id": ["L1", "L2", "L3", "", ""],
        "patient_id": ["P1", "P1", "", "L3", ""],
    }
    comp = leakage_components(5, [], *keys.values())
    # 0-1 share a patient; L3 as a lesion and L3 as a patient are different groups.
    assert comp.tolist() == [0, 0, 1, 2, 3]


def test_group_id_is_the_first_configured_group_key():
    """`group_id` (what the split and the leakage report call a lesion) is the first key's value;
    every key is still in `groups`."""
    preset = layouts.PRESETS["isic_archive"]
    table = pd.DataFrame(
        {
            "isic_id": ["A", "B"],
            "diagnosis": ["mel", "nv"],
            "lesion_id": ["L1", ""],
            "patient_id": ["P1", "P2"],
        }
    )
    rows = layouts.records(preset, table, None, [], [30, 60])
    assert [(r.group_id, r.groups) for r in rows] == [
        ("L1", "lesion_id=L1;patient_id=P1"),
        ("", "patient_id=P2"),
    ]
    rows = layouts.records(preset, table, None, ["patient_id", "lesion_id"], [30, 60])
    assert [r.group_id for r in rows] == ["P1", "P2"]


def test_an_image_without_a_type_is_unknown_and_kept_when_unknown_is_allowed():
    ages = {"unknown"}
    t = layouts.Task(path="x.jpg", image_id="x", raw_label="nv", age_group="unknown", image_type="")
    kept = layouts.apply_labels(t, [], {}, ["dermoscopic", "unknown"], ages)
    assert kept.reject == "" and kept.drop == "" and kept.condition == "nv"
    dropped = layouts.apply_labels(t, [], {}, ["dermoscopic"], ages)
    assert dropped.drop == "image_type"
    assert dropped.reject == "image_type 'unknown' not in index.image_types ['dermoscopic']"
    typed = layouts.apply_labels(
        layouts.Task(
            path="y.jpg", image_id="y", raw_label="nv", age_group="unknown", image_type="clinical"
        ),
        [],
        {},
        ["clinical"],
        ages,
    )
    assert typed.reject == ""


# --- imagefolder: <condition>/<file> and <condition>/<age_group>/<file> --------------------

AGES = {"0-29", "30-59", "60+", "unknown"}
EDGES = [30, 60]


def lab(classes: tuple[str, ...] = ()) -> layouts.Labelling:
    return layouts.Labelling(list(classes), {}, [], AGES, EXTS)


def sidecar(rows: list[dict], **cols: str) -> dict[str, dict[str, str]]:
    from dermai.params import SidecarParams

    return layouts.read_sidecar(pd.DataFrame(rows, dtype=str), "meta.csv", SidecarParams(**cols))


def test_imagefolder_reads_both_depths_and_rejects_the_rest():
    files = ["acne/a.jpg", "eczema/60+/b.png", "eczema/misc/c.jpg", "x/y/z/d.jpg", "e.jpg"]
    tasks, unused = layouts.plan_imagefolder(files, lab(), EDGES, "clinic")
    got = {t.path: (t.condition, t.age_group, t.source, t.reject[:24]) for t in tasks}
    assert got["acne/a.jpg"] == ("acne", "unknown", "clinic", "")
    assert got["eczema/60+/b.png"] == ("eczema", "60+", "clinic", "")
    assert "is not an age group" in next(t.reject for t in tasks if t.path == "eczema/misc/c.jpg")
    assert got["x/y/z/d.jpg"][3] == got["e.jpg"][3] == "path does not match layo"
    assert unused == 0 and all(t.meta == () for t in tasks)


def test_imagefolder_sidecar_gives_age_meta_and_group_keys():
    side = sidecar(
        [
            {"name": "a.jpg", "yrs": "45", "pid": "P1", "les": "", "sex": "f", "site": "face"},
            {"name": "eczema/b.jpg", "yrs": "", "pid": "P1", "les": "L9", "sex": "", "site": ""},
            {"name": "gone.jpg", "yrs": "7", "pid": "P2", "les": "", "sex": "", "site": ""},
            {"name": "c.jpg", "yrs": "12", "pid": "", "les": "", "sex": "", "site": ""},
        ],
        image="name",
        age="yrs",
        patient_id="pid",
        lesion_id="les",
        sex="sex",
        site="site",
    )
    files = ["acne/a.jpg", "eczema/b.jpg", "acne/60+/c.jpg", "acne/d.jpg"]
    tasks, unused = layouts.plan_imagefolder(files, lab(), EDGES, "clinic", side)
    by = {t.path: t for t in tasks}
    assert unused == 1  # gone.jpg names no file: counted, not lost
    a, b, c, d = (by[f] for f in files)
    assert (a.age_group, a.meta, a.groups, a.group_id) == (
        "30-59",
        ("45", "f", "face"),
        "patient_id=P1",
        "P1",
    )
    assert (b.age_group, b.groups, b.group_id) == ("unknown", "lesion_id=L9;patient_id=P1", "L9")
    assert "disagrees with the sidecar" in c.reject  # age folder 60+, sidecar age 12
    assert (d.reject, d.meta, d.groups) == ("", ("", "", ""), "")
    # the sidecar's patient key joins a and b into one leakage group
    keys = parse_groups([a.groups, b.groups, d.groups])
    comp = leakage_components(3, [], *keys.values())
    assert comp[0] == comp[1] != comp[2]


def test_sidecar_errors_are_one_line():
    import pytest

    with pytest.raises(layouts.LayoutError, match="lacks column.*age->years"):
        sidecar([{"file": "a.jpg"}], age="years")
    with pytest.raises(layouts.LayoutError, match="line 3: file 'a.jpg' listed twice"):
        sidecar([{"file": "a.jpg"}, {"file": "./a.jpg"}])


LOOKS = {
    "imagefolder": ["acne/a.jpg", "acne/b.jpg", "tinea/c.png"],
    "imagefolder (aged)": ["acne/0-29/a.jpg", "tinea/60+/c.png"],
    "folders": ["clinic/acne/0-29/a.jpg", "clinic/tinea/60+/c.png"],
    "manifest": ["labels.csv", "images/a.jpg"],
    "ham10000": ["HAM10000_metadata.csv", "HAM10000_images_part_1/ISIC_1.jpg"],
}


def test_looks_like_names_each_layout():
    for want, files in LOOKS.items():
        assert layouts.looks_like(files, AGES, EXTS).startswith(want.split()[0]), want
    assert layouts.looks_like(["a/b/c/d/e.jpg"], AGES, EXTS).startswith("none of the layouts")


def test_no_match_error_names_the_layout_the_tree_looks_like():
    import pytest

    files = LOOKS["imagefolder"]
    with pytest.raises(layouts.LayoutError, match=r"layout folders .* looks like imagefolder"):
        layouts.check_matches(layouts.plan_folders(files, lab()), "folders", files, lab())
    files = LOOKS["folders"]
    tasks, _ = layouts.plan_imagefolder(files, lab(), EDGES, "x")
    with pytest.raises(layouts.LayoutError, match=r"layout imagefolder .* looks like folders"):
        layouts.check_matches(tasks, "imagefolder", files, lab())
    # one file that fits is enough: the others are rejects with their reasons
    files = [*LOOKS["folders"], "acne/z.jpg"]
    tasks, _ = layouts.plan_imagefolder(files, lab(), EDGES, "x")
    layouts.check_matches(tasks, "imagefolder", files, lab())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acne", "tinea", "nv"]),
            st.sampled_from(["", "0-29/", "60+/", "misc/", "a/b/"]),
            st.integers(0, 30),
            st.sampled_from([".jpg", ".png", ".txt"]),
        ),
        unique_by=lambda t: t[2],
        max_size=15,
    ),
    st.booleans(),
)
def test_imagefolder_accounts_for_every_file_once(entries, with_sidecar):
    """Oracle: a file is an image row iff its extension is allowed, it sits at depth 2, or at
    depth 3 under an age folder, and its class is configured; its labels are its folders."""
    files = [f"{c}/{mid}f{i}{e}" for c, mid, i, e in entries]
    side = (
        {
            f"f{i}{e}": {
                "age": "",
                "sex": "m",
                "site": "",
                "patient_id": f"P{i % 3}",
                "lesion_id": "",
            }
            for _, _, i, e in entries
        }
        if with_sidecar
        else None
    )
    tasks, unused = layouts.plan_imagefolder(files, lab(("acne", "nv")), EDGES, "src", side)
    assert [t.path for t in tasks] == files and unused == 0
    for (c, mid, i, e), t in zip(entries, tasks, strict=True):
        ok = e != ".txt" and mid in ("", "0-29/", "60+/") and c != "tinea"
        assert (t.reject == "") == ok, (t.path, t.reject)
        if ok:
            assert (t.condition, t.age_group, t.image_id) == (c, mid[:-1] or "unknown", f"f{i}")
            assert t.groups == (f"patient_id=P{i % 3}" if with_sidecar else "")
            assert t.meta == (("", "m", "") if with_sidecar else ())
