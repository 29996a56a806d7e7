import numpy as np

from dermai.core.groups import exact_pairs, leakage_components


def test_exact_pairs_all_pairs_within_equal_hashes():
    assert exact_pairs(["x", "y", "x", "z", "x", "y"]).tolist() == [[0, 2], [0, 4], [1, 5], [2, 4]]
    assert exact_pairs(["a", "b"]).shape == (0, 2)


def test_components_merge_pairs_and_metadata_groups():
    # 0-1 by a pair, 1-3 by lesion L1, 4-5 by lesion L2, 2 alone, 6-7 by a pair.
    pairs = np.array([[0, 1], [6, 7]])
    comp = leakage_components(8, pairs, ["", "L1", "", "L1", "L2", "L2", "", ""])
    assert comp.tolist() == [0, 0, 1, 0, 2, 2, 3, 3]


def test_components_numbered_by_first_item_and_transitive():
    pairs = np.array([[3, 4], [2, 3], [0, 5]])
    comp = leakage_components(6, pairs, [""] * 6)
    assert comp.tolist() == [0, 1, 2, 2, 2, 0]


def test_no_pairs_every_item_alone():
    assert leakage_components(3, np.zeros((0, 2), dtype=np.int64), ["", "", ""]).tolist() == [
        0,
        1,
        2,
    ]
