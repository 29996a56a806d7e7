"""Readers of the pipeline's CSV tables (column names: `dermai.core.schema`).

Every column is read as a string: a dhash like 0000000000001234 must not become an int, and an
image_id or label spelled "NA" must stay a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dermai.core.schema import ALL_SPLITS, DUPLICATES_COLUMNS, EXTERNAL, GROUPS_COLUMNS, SPLITS
from dermai.errors import DermaiError


def read_table(
    path: str | Path,
    required: Sequence[str],
    what: str,
    *,
    hint: str = "",
    empty_as_null: bool = False,
    sep: str = ",",
) -> pd.DataFrame:
    """A CSV (`sep`: another field separator) with all columns as strings; a one-line error if
    it is missing, unreadable or lacks a `required` column. `empty_as_null` makes empty fields
    null (for the data gates)."""
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"{what} not found: {path}{f' ({hint})' if hint else ''}")
    try:
        df = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""] if empty_as_null else None,
            sep=sep,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DermaiError(f"{what} {path} is not a readable CSV: {first}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DermaiError(f"{what} {path} lacks column(s) {', '.join(missing)}")
    return df


def read_records(path: str | Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """`read_table`'s rows as dicts of strings (column -> value), in file order."""
    df = read_table(path, required, what)
    return [{str(k): str(v) for k, v in row.items()} for row in df.to_dict("records")]


def read_labels_table(path: Path, what: str, sep: str = ",") -> pd.DataFrame:
    """A labels table as strings, or a one-line error, also when it has no rows: a header-only
    table once indexed 0 images and failed two stages later."""
    if path.is_file() and path.stat().st_size == 0:
        raise DermaiError(f"{path} is empty: a labels table needs a header and rows")
    df = read_table(path, (), what, sep=sep)
    if df.empty:
        raise DermaiError(f"{path} has a header but no rows: no image is labelled")
    return df


def read_index(path: str | Path) -> pd.DataFrame:
    return read_table(path, ("image_id",), "index", hint="run `dermai index` first")


def read_groups(path: str | Path) -> pd.DataFrame:
    return read_table(path, GROUPS_COLUMNS, "groups", hint="run `dermai dedup` first")


def read_duplicates(path: str | Path) -> pd.DataFrame:
    return read_table(path, DUPLICATES_COLUMNS[:3], "duplicates", hint="run `dermai dedup` first")


def read_split(folder: str | Path, split: str) -> pd.DataFrame:
    if split not in ALL_SPLITS:
        raise DermaiError(f"unknown split {split!r}; use one of {', '.join(ALL_SPLITS)}")
    return read_table(
        Path(folder) / f"{split}.csv",
        ("image_id", "condition"),
        f"split file {split}.csv",
        hint="run `dermai split` first",
    )


def split_names(folder: str | Path) -> tuple[str, ...]:
    """train, val, test, plus `external` when the split stage wrote one (a held-out site)."""
    held_out = (Path(folder) / f"{EXTERNAL}.csv").is_file()
    return (*SPLITS, EXTERNAL) if held_out else SPLITS
