"""Tables and values the data gates validate (pure: no I/O, no Great Expectations).

GX validates one table per suite, so the splits suite runs over one long "facts" frame: every row
belongs to one check (column `check`) and each expectation in `expectations/splits.json` selects
its rows with a row_condition. A cross-split rule then becomes "`key` is unique among this check's
deduplicated (key, split) rows", which the built-in ExpectColumnValuesToBeUnique states directly.

A held-out site (`split.external_source`) adds the `external` split to every cross-split check;
its expected members (the sources' images and whatever shares a leakage group with them, the
split stage's rule) are `held_out` rows that must sit in `external`, its expected size is exact,
and train/val/test sizes are expected from the rest of the index.

Cross-validation folds (data/splits/folds.csv, `split.folds`) get the same facts with each fold
as a "split" (`fold_members`): the folds suite checks that every image is held out exactly once,
that no leakage group, lesion, patient, duplicate or near-duplicate pair spans two folds, and that
every condition with enough groups is in every fold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dermai.core.groups import parse_groups
from dermai.core.schema import EXTERNAL, FOLDS_COLUMNS, INDEX_COLUMNS
from dermai.core.splitting import external_members

# Columns the facts frame is built from; without them the gate cannot be evaluated at all.
REQUIRED = {
    "index": ("image_id", "sha1", "condition"),
    "groups": ("image_id", "leakage_group"),
    "duplicates": ("a", "b", "kind"),
    "split": ("image_id",),
}
FACT_COLUMNS = ("check", "key", "split", "indexed", "matches_index", "n_images")


def size_bounds(
    fraction: float, n_index: int, rel_tolerance: float, abs_tolerance: float
) -> tuple[int, int]:
    """Integer row-count bounds: expected = fraction * n_index, tol = max(rel*expected, abs)."""
    expected = fraction * n_index
    tol = max(rel_tolerance * expected, abs_tolerance)
    # Round first so 0.1 * 300 = 30.000000000000004 does not push the bound up by one.
    lo = math.ceil(round(expected - tol, 9))
    hi = math.floor(round(expected + tol, 9))
    return max(0, lo), hi


def index_parameters(classes: Sequence[str], age_groups: Sequence[str]) -> dict[str, Any]:
    return {"classes": list(classes), "age_groups": list(age_groups)}


def splits_parameters(
    fractions: Mapping[str, float],
    n_index: int,
    rel_tolerance: float,
    abs_tolerance: float,
    n_external: int = 0,
) -> dict[str, Any]:
    """Row-count bounds per split: the fractions apply to the images not held out; the
    external split's size is exact (0 when no site is held out)."""
    out: dict[str, Any] = {}
    for name, fraction in fractions.items():
        lo, hi = size_bounds(fraction, n_index - n_external, rel_tolerance, abs_tolerance)
        out[f"{name}_min_rows"] = lo
        out[f"{name}_max_rows"] = hi
    out[f"{EXTERNAL}_min_rows"] = out[f"{EXTERNAL}_max_rows"] = n_external
    return out


def external_ids(index: pd.DataFrame, groups: pd.DataFrame, held_out: Sequence[str]) -> list[str]:
    """The image_ids the split stage must put in `external`, in index order (same rule:
    `core.splitting.external_members`). Raises ValueError for a source no image has."""
    if not held_out:
        return []
    group_of = groups.drop_duplicates("image_id").set_index("image_id")["leakage_group"]
    rows = index.dropna(subset=["image_id"]).drop_duplicates("image_id")
    group = rows["image_id"].map(group_of).fillna(rows["image_id"])
    mask, _ = external_members(_as_text(rows["source"]).tolist(), group.tolist(), held_out)
    return rows["image_id"][mask].tolist()


def _as_text(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), "").astype(str)


def _member_rows(splits: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [df.assign(split=name) for name, df in splits.items()]
    cols = [*INDEX_COLUMNS, "leakage_group", "split"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat([f.reindex(columns=cols) for f in frames], ignore_index=True)


def _membership(index: pd.DataFrame, groups: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Index image_ids left-joined with split membership, plus split rows not in the index."""
    index_ids = set(index["image_id"].dropna())
    ref = index.reindex(columns=list(INDEX_COLUMNS)).drop_duplicates("image_id")
    group_of = groups.drop_duplicates("image_id").set_index("image_id")["leakage_group"]
    ref = ref.assign(leakage_group=ref["image_id"].map(group_of))
    ref = ref.set_index("image_id")

    compare = [c for c in (*INDEX_COLUMNS, "leakage_group") if c != "image_id"]
    indexed = members["image_id"].isin(index_ids)
    expected = ref.reindex(members["image_id"])[compare].reset_index(drop=True)
    same = pd.Series(True, index=members.index)
    for col in compare:
        same &= _as_text(members[col]).to_numpy() == _as_text(expected[col]).to_numpy()
    listed = pd.DataFrame(
        {
            "key": members["image_id"],
            "split": members["split"],
            "indexed": indexed.astype(object),
            "matches_index": (same & indexed).astype(object),
        }
    )
    missing_ids = sorted(index_ids - set(members["image_id"].dropna()))
    missing = pd.DataFrame(
        {"key": missing_ids, "split": None, "indexed": True, "matches_index": None}
    )
    # Index rows without an image_id cannot be matched; index.image_id_not_null reports them.
    out = pd.concat([listed, missing], ignore_index=True) if missing_ids else listed
    return out.assign(check="membership")


def _keyed(check: str, key: pd.Series, split: pd.Series) -> pd.DataFrame:
    df = pd.DataFrame({"key": key.to_numpy(), "split": split.to_numpy()})
    df = df.dropna().drop_duplicates().sort_values(["key", "split"], kind="stable")
    return df.assign(check=check)


def _metadata_groups(members: pd.DataFrame) -> pd.DataFrame:
    """(key=value, split) rows for every metadata group key (lesion_id, patient_id, ...)."""
    cells = _as_text(members["groups"]).tolist()
    keyed = parse_groups(cells)
    keys, splits = [], []
    for k, values in keyed.items():
        for v, s in zip(values, members["split"], strict=True):
            if v:
                keys.append(f"{k}={v}")
                splits.append(s)
    return _keyed("metadata_group", pd.Series(keys, dtype=object), pd.Series(splits, dtype=object))


def _perceptual_pairs(duplicates: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    pairs = duplicates.loc[duplicates["kind"] == "perceptual", ["a", "b"]].dropna()
    pairs = pairs.assign(key=pairs["a"].astype(str) + "|" + pairs["b"].astype(str))
    where = members[["image_id", "split"]].dropna()
    rows = []
    for end in ("a", "b"):
        joined = pairs.merge(where, left_on=end, right_on="image_id", how="inner")
        rows.append(joined[["key", "split"]])
    both = pd.concat(rows, ignore_index=True)
    return _keyed("perceptual_pair", both["key"], both["split"])


def _presence(
    index: pd.DataFrame,
    groups: pd.DataFrame,
    members: pd.DataFrame,
    presence_splits: Sequence[str],
    min_groups: int,
    held_out: Sequence[str] = (),
) -> pd.DataFrame:
    """(condition, split) rows with image counts, for conditions with enough leakage groups.

    Groups are counted over the index (groups.csv) minus the `held_out` image_ids (an unseen
    site need not hold every condition); an image without a group counts as its own.
    """
    group_of = groups.drop_duplicates("image_id").set_index("image_id")["leakage_group"]
    labelled = index[["image_id", "condition"]].dropna()
    labelled = labelled[~labelled["image_id"].isin(held_out)]
    group = labelled["image_id"].map(group_of).fillna(labelled["image_id"])
    n_groups = group.groupby(labelled["condition"]).nunique()
    eligible = sorted(n_groups[n_groups >= min_groups].index)
    counts = members.groupby(["condition", "split"]).size()
    rows = [
        {"key": cond, "split": split, "n_images": int(counts.get((cond, split), 0))}
        for cond in eligible
        for split in presence_splits
    ]
    return pd.DataFrame(rows, columns=["key", "split", "n_images"]).assign(check="presence")


def splits_facts(
    index: pd.DataFrame,
    groups: pd.DataFrame,
    duplicates: pd.DataFrame,
    splits: Mapping[str, pd.DataFrame],
    *,
    min_groups_for_presence: int,
    presence_splits: Sequence[str] | None = None,
    held_out: Sequence[str] = (),
) -> pd.DataFrame:
    """The one table the splits suite validates (see module docstring).

    Per-image attributes for the cross-split checks come from the split rows themselves (what
    training reads); `matches_index` ties those rows back to index.csv and groups.csv.
    `held_out` are the image_ids expected in the external split (`external_ids`).
    """
    members = _member_rows(splits)
    first = members.dropna(subset=["image_id"]).drop_duplicates("image_id")
    where = first.set_index("image_id")["split"]
    held = pd.DataFrame(
        {"key": list(held_out), "split": [where.get(i) for i in held_out], "check": "held_out"}
    )
    parts = [
        _membership(index, groups, members),
        _keyed("sha1", members["sha1"], members["split"]),
        _keyed("leakage_group", members["leakage_group"], members["split"]),
        _metadata_groups(members),
        _perceptual_pairs(duplicates, members),
        _presence(
            index,
            groups,
            members,
            list(splits) if presence_splits is None else presence_splits,
            min_groups_for_presence,
            held_out,
        ),
        held,
    ]
    facts = pd.concat([p for p in parts if len(p)], ignore_index=True)
    facts = facts.reindex(columns=list(FACT_COLUMNS))
    for col in ("check", "key", "split"):
        facts[col] = facts[col].astype("str").where(facts[col].notna(), None)
    facts["n_images"] = pd.to_numeric(facts["n_images"], errors="coerce").astype("float64")
    return facts


def describe_failure(suite: str, name: str, item: Mapping[str, Any]) -> str:
    """`splits.cross_split_sha1 (2 unexpected)`: one failed expectation for the gate message."""
    label = f"{suite}.{name}"
    if item.get("error"):
        return f"{label} (error: {item['error']})"
    if item.get("unexpected_count") is not None:
        return f"{label} ({item['unexpected_count']} unexpected)"
    if item.get("mismatched"):
        parts = [f"{k} {', '.join(map(str, v))}" for k, v in sorted(item["mismatched"].items())]
        return f"{label} ({'; '.join(parts)})"
    if "observed_value" in item:
        detail = f"observed {item['observed_value']}"
        if "expected" in item:
            detail += f", expected {item['expected']}"
        return f"{label} ({detail})"
    return f"{label} (failed)"


def gate_message(summary: Mapping[str, Any]) -> str:
    """One line naming every failed expectation, in suite and file order."""
    failed = [
        describe_failure(suite, name, item)
        for suite, body in summary["suites"].items()
        for name, item in body["expectations"].items()
        if not item["success"]
    ]
    return "gate failed: " + ", ".join(failed)


def fold_members(
    index: pd.DataFrame, folds: pd.DataFrame, external: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """Fold name -> its rows, as `splits_facts` reads split rows: folds.csv's own columns (fold,
    leakage group, condition, age group: compared with the index and groups.csv) and the
    index's other columns by image id. The external split, when a site is held out, is one more
    member (its images are in no fold)."""
    rest = [c for c in INDEX_COLUMNS if c not in FOLDS_COLUMNS]
    ref = index.drop_duplicates("image_id").set_index("image_id").reindex(columns=rest)
    rows = folds.join(ref, on="image_id")
    out = {str(f): rows[rows["fold"] == f] for f in sorted(set(rows["fold"].dropna()), key=int)}
    if external is not None:
        out[EXTERNAL] = external
    return out
