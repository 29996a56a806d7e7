import math

import pytest

from dermai.core.ages import UNKNOWN, age_labels, all_age_groups, bin_age

EDGES = [30, 60]


def test_labels_follow_edges():
    assert age_labels(EDGES) == ["0-29", "30-59", "60+"]
    assert all_age_groups([18]) == ["0-17", "18+", "unknown"]


@pytest.mark.parametrize(
    ("age", "group"),
    [
        (1, "0-29"),
        (29, "0-29"),
        (29.9, "0-29"),
        (30, "30-59"),
        ("45", "30-59"),
        ("45.0", "30-59"),
        (59, "30-59"),
        (60, "60+"),
        (85, "60+"),
        ("", UNKNOWN),
        ("  ", UNKNOWN),
        (None, UNKNOWN),
        (0, UNKNOWN),
        ("0", UNKNOWN),
        (-3, UNKNOWN),
        (math.nan, UNKNOWN),
        ("n/a", UNKNOWN),
    ],
)
def test_binning(age, group):
    assert bin_age(age, EDGES) == group


@pytest.mark.parametrize("edges", [[], [60, 30], [0, 30], [30, 30]])
def test_bad_edges(edges):
    with pytest.raises(ValueError):
        age_labels(edges)
