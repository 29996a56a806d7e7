"""Grouped, stratified k-fold assignment for cross-validation. Pure: strata and groups in, one
fold number per image out (`dermai split` writes them as data/splits/folds.csv).

Whole leakage groups (duplicates, lesion and patient keys) go to one fold, so no model ever sees a
group it is scored on. Folds are stratified on condition x age group by scikit-learn's
`StratifiedGroupKFold` (the same call that makes the train/val/test split; on a few groups its
greedy pass can leave a stratum in one fold, which `rebalance` repairs), then a condition with
enough groups is moved into every fold where chance left it out (`splitting.ensure_presence`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dermai.core.schema import FOLDS_COLUMNS


def group_kfold(strata: Sequence[str], groups: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Fold 0..k-1 per item by StratifiedGroupKFold(k, shuffled by `seed`) on `strata` with
    `groups` kept whole; plain group k-fold when every stratum has fewer than k members (the
    stratification then has nothing to balance). Needs k >= 2 and at least k distinct groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    n = len(strata)
    fold_of = np.full(n, -1)
    if n == 0:
        return fold_of
    y = np.asarray(strata)
    if np.unique(y, return_counts=True)[1].max() < k:
        y = np.zeros(n, dtype=int)
    with warnings.catch_warnings():
        # "The least populated class has only N members": expected for rare strata; reported.
        warnings.simplefilter("ignore", UserWarning)
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for f, (_, test_idx) in enumerate(sgkf.split(np.zeros(n), y, np.asarray(groups))):
            fold_of[test_idx] = f
    return fold_of


def rebalance(
    fold_of: np.ndarray, strata: Sequence[str], groups: Sequence[str], k: int
) -> np.ndarray:
    """Repair what StratifiedGroupKFold's greedy pass can leave on a few groups (e.g. every
    image of a stratum in one fold, 7 images against 2): while some stratum's spread across the
    folds exceeds the largest group's size, move the one whole group that most lowers
    (largest spread, sum of squared deviations from the even share), keeping every fold
    non-empty. A no-op when the spread is already within one group, which is every collection
    of ordinary size (PAD-UFES-20: spread 1, largest group 6), so their folds stay sklearn's."""
    fold_of = np.asarray(fold_of, dtype=int)
    if not len(fold_of):
        return fold_of
    _, code = np.unique(np.asarray(strata), return_inverse=True)
    gnames, gcode = np.unique(np.asarray(groups), return_inverse=True)
    per_group = np.zeros((len(gnames), int(code.max()) + 1), dtype=int)
    np.add.at(per_group, (gcode, code), 1)
    largest = int(per_group.sum(axis=1).max())
    where = np.zeros(len(gnames), dtype=int)
    where[gcode] = fold_of
    counts = np.zeros((k, per_group.shape[1]), dtype=int)
    np.add.at(counts, where, per_group)

    def cost(c: np.ndarray) -> tuple[int, float]:
        return int((c.max(axis=0) - c.min(axis=0)).max()), float(((c - c.mean(axis=0)) ** 2).sum())

    current = cost(counts)
    while current[0] > largest:
        best = None
        for g in range(len(gnames)):  # groups in sorted-name order: deterministic
            a = where[g]
            if (where == a).sum() == 1:
                continue  # the fold's only group: moving it would empty the fold
            for b in range(k):
                if b == a:
                    continue
                trial = counts.copy()
                trial[a] -= per_group[g]
                trial[b] += per_group[g]
                c = cost(trial)
                if c < current and (best is None or c < best[0]):
                    best = (c, g, b, trial)
        if best is None:
            break  # no single move helps: keep what we have
        current, g, b, counts = best
        where[g] = b
    return where[gcode]


def fold_names(k: int) -> tuple[str, ...]:
    """The folds' names as the presence pass and the reports spell them: "0".."k-1"."""
    return tuple(str(f) for f in range(k))


def assign_folds(
    conditions: Sequence[str],
    age_groups: Sequence[str],
    groups: Sequence[str],
    k: int,
    seed: int,
    min_groups: int,
) -> tuple[np.ndarray, list[str]]:
    """Fold per image (k >= 2), stratified on condition x age group, whole leakage groups per
    fold; then every condition with at least max(`min_groups`, k) groups is put in every fold
    (whole groups moved). Returns the folds and one line per move. ValueError (one line) when
    there are fewer groups than folds: some fold would hold nothing."""
    from dermai.core.splitting import ensure_presence

    n_groups = len(set(groups))
    if k < 2 or n_groups < k:
        raise ValueError(
            f"split.folds: {k} folds need at least {max(k, 2)} leakage groups; "
            f"the index has {n_groups}"
        )
    strata = [f"{c}|{a}" for c, a in zip(conditions, age_groups, strict=True)]
    folds = rebalance(group_kfold(strata, groups, k, seed), strata, groups, k)
    folds = folds.astype(str).astype(object)
    names = fold_names(k)
    moved, moves = ensure_presence(folds, conditions, groups, max(min_groups, k), seed, names)
    return np.asarray(moved, dtype=int), moves


def fold_table(df: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    """data/splits/folds.csv: the index rows (with their leakage group) and their folds."""
    out = df.assign(fold=np.asarray(folds, dtype=int))
    return out.loc[:, list(FOLDS_COLUMNS)].sort_values(["fold", "image_id"], kind="stable")


def fold_report(table: pd.DataFrame, k: int, moves: list[str]) -> dict:
    """The leakage report's `folds` entry: sizes, per-condition counts and groups crossing folds
    (0 by construction; the validate gate checks it again from the file)."""
    per_group = table.groupby("leakage_group")["fold"].nunique()
    return {
        "k": k,
        "sizes": [int((table["fold"] == f).sum()) for f in range(k)],
        "by_condition": {
            c: [int(((table["fold"] == f) & (table["condition"] == c)).sum()) for f in range(k)]
            for c in sorted(set(table["condition"]))
        },
        "cross_fold_groups": int((per_group > 1).sum()),
        "presence_moves": moves,
    }


INNER_FOLDS = 8  # the inner validation set is 1/8 of a fold's training images (~10% of all)


def inner_validation(
    conditions: Sequence[str], age_groups: Sequence[str], groups: Sequence[str], seed: int
) -> np.ndarray:
    """Which of a fold's training images form its inner validation set (bool per image): one
    of INNER_FOLDS grouped, stratified folds of them. The epoch and the temperature are chosen
    on it, so nothing about the held-out fold chooses them."""
    k = min(INNER_FOLDS, len(set(groups)))
    if k < 2:
        raise ValueError("a fold's training images hold fewer than 2 leakage groups")
    strata = [f"{c}|{a}" for c, a in zip(conditions, age_groups, strict=True)]
    return group_kfold(strata, groups, k, seed) == 0
