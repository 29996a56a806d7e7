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
