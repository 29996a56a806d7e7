"""Pure parts of the data gates: size bounds and the facts table the splits suite validates."""

from __future__ import annotations

import pandas as pd
import pytest

from dermai.core import gates


@pytest.mark.parametrize(
    ("fraction", "n", "bounds"),
    [
        (0.8, 300, (237, 243)),  # expected 240, tol = max(3.6, 3)
        (0.1, 300, (27, 33)),  # 0.1 * 300 = 30.000000000000004 must not give 28
        (0.8, 10_000, (7880, 8120)),  # tol = 120 > 3
        (0.1, 10, (0, 4)),  # clamped at zero
        (0.0, 500, (0, 3)),
    ],
)
def test_size_bounds(fraction: float, n: int, bounds: tuple[int, int]) -> None:
    assert gates.size_bounds(fraction, n, 0.015, 3) == bounds


def test_splits_parameters_names() -> None:
    params = gates.splits_parameters({"train": 0.8, "val": 0.1, "test": 0.1}, 300, 0.015, 3)
    assert params == {
        "train_min_rows": 237,
        "train_max_rows": 243,
        "val_min_rows": 27,
        "val_max_rows": 33,
        "test_min_rows": 27,
        "test_max_rows": 33,
        "external_min_rows": 0,
        "external_max_rows": 0,
    }


def test_splits_parameters_with_a_held_out_site() -> None:
    """Fractions apply to the 250 images left; the external size (50) is exact."""
    params = gates.splits_parameters({"train": 0.8, "val": 0.1, "test": 0.1}, 300, 0.015, 3, 50)
    assert (params["train_min_rows"], params["train_max_rows"]) == (197, 203)
    assert (params["val_min_rows"], params["val_max_rows"]) == (22, 28)
    assert (params["external_min_rows"], params["external_max_rows"]) == (50, 50)


def test_external_ids_are_the_sources_and_their_groups() -> None:
    index = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d", "e"], "source": ["s1", "s2", "s2", "s1", "s1"]}
    )
    groups = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d"], "leakage_group": ["G1", "G1", "G3", "G4"]}
    )
    assert gates.external_ids(index, groups, ["s2"]) == ["a", "b", "c"]  # a shares G1 with b
    assert gates.external_ids(index, groups, []) == []
    with pytest.raises(ValueError, match="not in the index: s9"):
        gates.external_ids(index, groups, ["s9"])


def test_held_out_rows_name_where_each_held_out_image_sits() -> None:
    index = pd.DataFrame({"image_id": ["a", "b", "c"], "condition": ["nv", "nv", "nv"]})
    groups = pd.DataFrame({"image_id": ["a", "b", "c"], "leakage_group": ["G1", "G2", "G3"]})
    full = index.merge(groups)
    splits = {"train": full[full.image_id == "a"], "external": full[full.image_id == "b"]}
    facts = gates.splits_facts(
        index,
        groups,
        pd.DataFrame(columns=["a", "b", "kind"]),
        splits,
        min_groups_for_presence=1,
        held_out=["a", "b", "c"],
    )
    held = facts.query("check == 'held_out'").set_index("key")["split"]
    assert held[["a", "b"]].tolist() == ["train", "external"] and pd.isna(held["c"])


def _row(iid: str, cond: str, sha: str, group: str) -> dict[str, str]:
    return {
        "image_id": iid,
        "condition": cond,
        "sha1": sha,
        "leakage_group": group,
        "path": f"{iid}.jpg",
    }


def _facts(min_groups: int = 2) -> pd.DataFrame:
    rows = [
        _row("a", "nv", "s1", "G1"),
        _row("b", "nv", "s1", "G1"),
        _row("c", "nv", "s3", "G3"),
        _row("d", "mel", "s4", "G4"),
        _row("e", "nv", "s5", "G5"),
    ]
    full = pd.DataFrame(rows)
    index = full.drop(columns=["leakage_group"])
    groups = full[["image_id", "leakage_group"]]
    duplicates = pd.DataFrame({"a": ["a", "c"], "b": ["b", "d"], "kind": ["exact", "perceptual"]})
    splits = {
        "train": full[full.image_id.isin(["a", "c"])],
        "test": pd.concat(
            [full[full.image_id.isin(["b", "d"])], pd.DataFrame([_row("x", "nv", "s9", "G9")])]
        ),
    }  # "e" is in no split, "x" is not indexed
    return gates.splits_facts(index, groups, duplicates, splits, min_groups_for_presence=min_groups)


def test_membership_rows() -> None:
    m = _facts().query("check == 'membership'").set_index("key")
    assert sorted(m.index) == ["a", "b", "c", "d", "e", "x"]
    assert pd.isna(m.loc["e", "split"]) and m.loc["e", "indexed"] is True
    assert m.loc["x", "indexed"] is False and m.loc["x", "matches_index"] is False
    assert m.loc["a", "matches_index"] is True


def test_cross_split_rows_are_deduplicated_key_split_pairs() -> None:
    facts = _facts()
    sha = facts.query("check == 'sha1'")
    assert sha[sha.key == "s1"]["split"].tolist() == ["test", "train"]
    assert not sha.duplicated(["key", "split"]).any()
    pairs = facts.query("check == 'perceptual_pair'")  # exact pairs are the sha1 check's job
    assert pairs["key"].tolist() == ["c|d", "c|d"] and set(pairs["split"]) == {"train", "test"}


def test_presence_only_for_conditions_with_enough_groups() -> None:
    presence = _facts(min_groups=2).query("check == 'presence'")
    # nv has groups G1, G3, G5 in the index; mel only G4
    assert set(presence["key"]) == {"nv"}
    assert dict(zip(presence["split"], presence["n_images"], strict=True)) == {
        "train": 2,
        "test": 2,
    }
    assert _facts(min_groups=4).query("check == 'presence'").empty


def test_gate_message_lists_failures_in_order() -> None:
    summary = {
        "suites": {
            "index": {
                "expectations": {
                    "condition_in_set": {"success": False, "unexpected_count": 1},
                    "sha1_format": {"success": True, "unexpected_count": 0},
                }
            },
            "splits": {
                "expectations": {
                    "train_size": {"success": False, "observed_value": 5, "expected": "7..9"},
                    "cross_split_sha1": {"success": False, "unexpected_count": 2},
                }
            },
        }
    }
    assert gates.gate_message(summary) == (
        "gate failed: index.condition_in_set (1 unexpected), "
        "splits.train_size (observed 5, expected 7..9), splits.cross_split_sha1 (2 unexpected)"
    )
