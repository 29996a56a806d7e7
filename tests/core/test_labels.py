"""Labels CSV parsing: ISIC one-hot and plain formats, case-insensitive, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from dermai.core.labels import groups, parse
from dermai.errors import DermaiError

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def frame(rows: list[list[str]], header: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=header, dtype=str)


def test_isic_one_hot():
    hdr = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    df = frame(
        [
            ["ISIC_1", "1.0", "0.0", "0.0", "0.0", "0.0", "0.0", "0.0"],
            ["ISIC_2", "0", "0", "0", "0", "0", "0", "1"],
        ],
        hdr,
    )
    names, y, fmt = parse(df, CLASSES)
    assert names == ["ISIC_1", "ISIC_2"] and fmt == "onehot"
    assert [CLASSES[i] for i in y] == ["mel", "vasc"]


def test_plain_case_insensitive_with_group_columns():
    df = frame([["a.jpg", "MEL", "60+"], ["b", " nv ", ""]], ["image", "label", "age_group"])
    _, y, fmt = parse(df, CLASSES)
    assert fmt == "plain" and [CLASSES[i] for i in y] == ["mel", "nv"]
    assert groups(df) == {"age_group": ["60+", "unknown"]}


def test_unmappable_plain_label_is_one_line_error():
    df = frame([["a", "mel"], ["b", "melanoma"], ["c", "scc"]], ["image", "label"])
    with pytest.raises(DermaiError) as exc:
        parse(df, CLASSES)
    msg = str(exc.value)
    assert "\n" not in msg and "row 3 (b)" in msg and "'melanoma'" in msg and "1 more" in msg


def test_unmappable_one_hot_column_only_matters_when_used():
    hdr = ["image", "MEL", "NV", "SCC"]
    ok = frame([["a", "1", "0", "0"], ["b", "0", "1", "0"]], hdr)
    assert [CLASSES[i] for i in parse(ok, CLASSES)[1]] == ["mel", "nv"]
    bad = frame([["a", "1", "0", "0"], ["b", "0", "0", "1"]], hdr)
    with pytest.raises(DermaiError, match=r"row 3 \(b\): label 'SCC' is not one of"):
        parse(bad, CLASSES)


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([["a", "1", "1"]], ["image", "MEL", "NV"], "more than one class"),
        ([["a", "0", "0"]], ["image", "MEL", "NV"], "no class marked"),
        ([["a", "x", "0"]], ["image", "MEL", "NV"], "must be numeric"),
        ([["a", "mel"]], ["name", "label"], "needs an image column"),
        ([], ["image", "label"], "no rows"),
    ],
)
def test_malformed(rows, header, match):
    with pytest.raises(DermaiError, match=match):
        parse(frame(rows, header), CLASSES)
