"""Leakage-safe stratified splitting and its leakage report. Pure: tables in, split labels and
counts out (`dermai split` reads and writes the files).

Leakage groups (duplicates + lesion ids) are assigned whole. `split.duplicate_policy`: `group`
distributes whole groups by stratified group k-fold; `train` is the seed project's policy (naive
split, then every crossing group moved into train). The leakage report compares the final split
with a naive per-image stratified split. Held-out sources (`split.external_source`) go to an
`external` split with every leakage group that touches them; the fractions apply to the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from dermai.core.folds import group_kfold
from dermai.core.groups import parse_groups
from dermai.core.schema import EXTERNAL, SPLITS


def fold_plan(fractions: dict[str, float], max_folds: int = 100) -> tuple[int, dict[str, int]]:
    """Express split fractions as whole folds: 0.8/0.1/0.1 -> 10 folds, 8/1/1."""
    if set(fractions) != set(SPLITS):
        raise ValueError(f"fractions must name {SPLITS}, got {sorted(fractions)}")
    if any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    fr = {s: Fraction(fractions[s]).limit_denominator(max_folds) for s in SPLITS}
    k = lcm(*(f.denominator for f in fr.values()))
    if k > max_folds or any(abs(float(fr[s]) - fractions[s]) > 1e-6 for s in SPLITS):
        raise ValueError(f"split fractions {fractions} need more than {max_folds} folds")
    return k, {s: int(fr[s] * k) for s in SPLITS}


def _allocate(n: int, fractions: Sequence[float], rng: np.random.Generator) -> list[int]:
    """Largest-remainder rounding with random tie-breaking (no split is favoured by order)."""
    raw = np.asarray(fractions) * n
    counts = np.floor(raw).astype(int)
    rem = raw - counts + rng.uniform(0, 1e-9, len(raw))
    for i in np.argsort(-rem, kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def stratified_image_split(
    strata: Sequence[str], fractions: dict[str, float], seed: int
) -> np.ndarray:
    """The naive split: stratified per image, blind to duplicates and lesions."""
    rng = np.random.default_rng(seed)
    strata_arr = np.asarray(strata, dtype=object)
    out = np.empty(len(strata_arr), dtype=object)
    for s in sorted(set(strata_arr.tolist())):
        idx = np.flatnonzero(strata_arr == s)
        idx = idx[rng.permutation(len(idx))]
        counts = _allocate(len(idx), [fractions[x] for x in SPLITS], rng)
        start = 0
        for split, c in zip(SPLITS, counts, strict=True):
            out[idx[start : start + c]] = split
            start += c
    return out


def train_policy_split(
    strata: Sequence[str], groups: Sequence[str], fractions: dict[str, float], seed: int
) -> np.ndarray:
    """The seed project's policy: naive split, then every group that crosses splits -> train."""
    out = stratified_image_split(strata, fractions, seed)
    group_arr = np.asarray(groups, dtype=object)
    crossing = crossing_keys(out, group_arr)
    out[np.isin(group_arr, list(crossing))] = "train"
    return out


def group_split(
    strata: Sequence[str], groups: Sequence[str], fractions: dict[str, float], seed: int
) -> np.ndarray:
    """Whole groups distributed by stratified group k-fold, folds merged to the fractions."""
    k, folds = fold_plan(fractions)
    n = len(strata)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    splits = min(k, len(set(groups)))
    if splits < 2:
        out[:] = "train"
        return out
    fold_of = group_kfold(strata, groups, splits, seed)
    # Fold f -> split: the first folds go to test, then val, the rest to train.
    order = [("test", folds["test"]), ("val", folds["val"]), ("train", folds["train"])]
    mapping: dict[int, str] = {}
    f = 0
    for split, count in order:
        for _ in range(count):
            mapping[f] = split
            f += 1
    out[:] = [mapping.get(int(x), "train") for x in fold_of]
    return out


def crossing_keys(assign: Iterable[str], keys: Iterable[str]) -> set[str]:
    """Keys (groups, hashes) whose members sit in more than one split. Empty keys are ignored."""
    seen: dict[str, str] = {}
    crossing: set[str] = set()
    for split, key in zip(assign, keys, strict=True):
        if key == "" or key is None:
            continue
        prev = seen.setdefault(key, split)
        if prev != split:
            crossing.add(key)
    return crossing


def crossing_pairs(assign_of: dict[str, str], a: Iterable[str], b: Iterable[str]) -> int:
    """Number of pairs (a_i, b_i) whose two images sit in different splits."""
    return int(sum(assign_of[x] != assign_of[y] for x, y in zip(a, b, strict=True)))


def small_strata(strata: Sequence[str], n_splits: int = len(SPLITS)) -> dict[str, int]:
    """Strata with fewer members than splits: they cannot appear in every split."""
    values, counts = np.unique(np.asarray(strata, dtype=str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True) if c < n_splits}


def ensure_presence(
    assign: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str],
    min_groups: int,
    seed: int,
    targets: Sequence[str] = SPLITS,
) -> tuple[np.ndarray, list[str]]:
    """Move whole groups so every label with >= `min_groups` groups appears in every split
    (or every one of `targets`: the CV folds).

    Small datasets can leave a rare condition out of val or test even with stratification;
    this takes the smallest group of that label from the split holding most of its groups.
    Returns the new assignment and one line per move (for the report).
    """
    out = np.asarray(assign, dtype=object).copy()
    label_arr = np.asarray(labels, dtype=object)
    group_arr = np.asarray(groups, dtype=object)
    rng = np.random.default_rng(seed)
    moves: list[str] = []
    for label in sorted(set(label_arr.tolist())):
        has = label_arr == label
        label_groups = sorted(set(group_arr[has].tolist()))
        if len(label_groups) < min_groups:
            continue
        for target in targets:
            if (has & (out == target)).any():
                continue
            per_split = {s: sorted(set(group_arr[has & (out == s)].tolist())) for s in targets}
            donor = max(targets, key=lambda s: (len(per_split[s]), s == "train"))
            if len(per_split[donor]) < 2:
                continue
            sizes = {g: int((group_arr == g).sum()) for g in per_split[donor]}
            order = rng.permutation(len(per_split[donor]))
            candidates = [per_split[donor][i] for i in order]
            pick = min(candidates, key=lambda g: sizes[g])
            out[group_arr == pick] = target
            moves.append(f"{label}: group {pick} ({sizes[pick]} images) {donor} -> {target}")
    return out, moves


def external_members(
    sources: Sequence[str], groups: Sequence[str], held_out: Sequence[str]
) -> tuple[np.ndarray, set[str]]:
    """Which images go to the `external` split, and the leakage groups that span it.

    Every image of a held-out source is external; so is every image sharing a leakage group
    (duplicate cluster, lesion, patient) with one, because a training image that duplicates an
    external image would make the "unseen site" partly seen. Returns the boolean mask and the
    groups that held both a held-out-source image and another source's image.
    Raises ValueError naming the held-out sources that no image has.
    """
    src = np.asarray(sources, dtype=object)
    grp = np.asarray(groups, dtype=object)
    known = sorted(set(src.tolist()))
    unknown = sorted(set(held_out) - set(known))
    if unknown:
        raise ValueError(
            f"split.external_source names source(s) not in the index: {', '.join(unknown)}; "
            f"sources in the index: {', '.join(known) or 'none'}"
        )
    of_source = np.isin(src, list(held_out))
    touched = {g for g in grp[of_source].tolist() if g not in ("", None)}
    mask = of_source | np.isin(grp, list(touched))
    spanning = set(grp[mask & ~of_source].tolist())
    return mask, spanning


class LeakageCounts(TypedDict):
    """One side ("before"/"after") of the leakage report."""

    cross_split_exact_pairs: int
    cross_split_perceptual_pairs: int
    cross_split_metadata_groups: int
    cross_split_groups_by_key: dict[str, int]
    cross_split_leakage_groups: int
    images_in_cross_split_groups: int
    sizes: dict[str, int]


def leakage_counts(
    df: pd.DataFrame, assign: pd.Series, pairs: pd.DataFrame, splits: tuple[str, ...] = SPLITS
) -> LeakageCounts:
    """Cross-split exact pairs, perceptual pairs and groups for one assignment."""
    by_id = dict(zip(df["image_id"], assign, strict=True))

    def cross_pairs(kind: str) -> int:
        sel = pairs[pairs["kind"] == kind]
        return crossing_pairs(by_id, sel["a"], sel["b"])

    meta = crossing_keys(assign, df["group_id"])
    leak = crossing_keys(assign, df["leakage_group"])
    keys = parse_groups(df["groups"].tolist()) if "groups" in df.columns else {}
    return {
        "cross_split_exact_pairs": cross_pairs("exact"),
        "cross_split_perceptual_pairs": cross_pairs("perceptual"),
        "cross_split_metadata_groups": len(meta),
        "cross_split_groups_by_key": {
            k: len(crossing_keys(assign.tolist(), v)) for k, v in sorted(keys.items())
        },
        "cross_split_leakage_groups": len(leak),
        "images_in_cross_split_groups": int(df["leakage_group"].isin(leak).sum()),
        "sizes": {s: int((assign == s).sum()) for s in splits},
    }


def assign_splits(
    df: pd.DataFrame, fractions: dict[str, float], policy: str, seed: int, min_groups: int
) -> tuple[pd.Series, list[str]]:
    strata = (df["condition"] + "|" + df["age_group"]).tolist()
    groups = df["leakage_group"].tolist()
    if policy == "group":
        a = group_split(strata, groups, fractions, seed)
    else:
        a = train_policy_split(strata, groups, fractions, seed)
    a, moves = ensure_presence(a, df["condition"].tolist(), groups, min_groups, seed)
    return pd.Series(a, index=df.index, name="split"), moves


@dataclass(frozen=True)
class Split:
    """An index's split: the final assignment, the naive baseline it is compared with, the
    presence moves, and the held-out site (the `external` mask and the groups spanning it)."""

    assign: pd.Series
    naive: pd.Series
    moves: list[str]
    splits: tuple[str, ...]
    external: pd.Series  # bool per image
    spanning: set[str]
    rest: pd.DataFrame  # the images the fractions apply to


def split_index(
    df: pd.DataFrame,
    fractions: dict[str, float],
    policy: str,
    seed: int,
    min_groups: int,
    held_out: list[str],
) -> Split:
    """Split an index (with its `leakage_group` column) by `policy`; ValueError (one line, for
    the user) when the held-out sources leave nothing or the fractions cannot be met."""
    members, spanning = external_members(
        df["source"].tolist(), df["leakage_group"].tolist(), held_out
    )
    ext = pd.Series(members, index=df.index)
    # With nothing held out, `rest` is the index itself: the default split is unchanged.
    rest = df[~ext] if held_out else df
    if held_out and rest.empty:
        raise ValueError(
            f"split.external_source {held_out} holds out every image; nothing is left to train on"
        )
    # The naive baseline holds out the sources only (blind to groups); the final split holds
    # out their whole groups.
    of_source = df["source"].isin(held_out)
    naive_pool = df[~of_source] if held_out else df
    try:
        assign, moves = assign_splits(rest, fractions, policy, seed, min_groups)
        naive = pd.Series(
            stratified_image_split(
                (naive_pool["condition"] + "|" + naive_pool["age_group"]).tolist(), fractions, seed
            ),
            index=naive_pool.index,
        )
    except ValueError as exc:
        raise ValueError(f"split: {exc}") from exc
    splits = (*SPLITS, EXTERNAL) if held_out else SPLITS
    if held_out:
        assign = pd.concat([assign, pd.Series(EXTERNAL, index=df.index[ext])]).loc[df.index]
        naive = pd.concat([naive, pd.Series(EXTERNAL, index=df.index[of_source])]).loc[df.index]
    return Split(assign, naive, moves, splits, ext, spanning, rest)


def split_summary(df: pd.DataFrame, split: Split) -> pd.DataFrame:
    """Images per split x condition x age group, splits in their order."""
    summary = (
        df.assign(split=split.assign)
        .groupby(["split", "condition", "age_group"], sort=True)
        .size()
        .rename("count")
        .reset_index()
    )
    summary["split"] = pd.Categorical(summary["split"], split.splits, ordered=True)
    return summary.sort_values(["split", "condition", "age_group"])


def leakage_report(
    df: pd.DataFrame,
    pairs: pd.DataFrame,
    split: Split,
    fractions: dict[str, float],
    policy: str,
    seed: int,
    held_out: list[str],
) -> dict[str, Any]:
    """The leakage report: the naive split's cross-split pairs and groups ("before") against the
    final split's ("after"), the presence moves, the strata too small for every split, and the
    held-out site's counts."""
    strata = split.rest["condition"] + "|" + split.rest["age_group"]
    small = small_strata(strata.tolist())
    placed = {s: sorted(set(split.assign[strata.index][strata == s])) for s in small}
    before = leakage_counts(df, split.naive, pairs, split.splits)
    after = leakage_counts(df, split.assign, pairs, split.splits)
    report: dict[str, Any] = {
        "policy": policy,
        "seed": seed,
        "images": len(df),
        "targets": {s: round(fractions[s] * len(split.rest), 1) for s in SPLITS},
        "before": {"method": "naive per-image stratified split", **before},
        "after": {"method": f"policy={policy}", **after},
        "presence_moves": split.moves,
        "small_strata": {s: {"images": c, "splits": placed[s]} for s, c in sorted(small.items())},
    }
    if held_out:
        of_sources = df["source"].isin(held_out)
        report[EXTERNAL] = {
            "sources": sorted(held_out),
            "rule": "a leakage group holding any image of a held-out source goes to external whole",
            "images": int(split.external.sum()),
            "images_of_sources": int(of_sources.sum()),
            "images_pulled_by_groups": int((split.external & ~of_sources).sum()),
            "groups_spanning_sources": len(split.spanning),
        }
    return report
