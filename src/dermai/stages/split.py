"""Leakage-safe train/val/test split, stratified on condition x age group.

Leakage groups (duplicates + lesion ids) are assigned whole. `split.duplicate_policy`:
`group` distributes whole groups by stratified group k-fold; `train` is the seed project's
policy (naive split, then every crossing group moved into train). The leakage report compares the
final split with a naive per-image stratified split.

`split.external_source` holds whole sites out: every image of those sources goes to a fourth
split, `external.csv`, and the fractions apply to the rest. A leakage group that holds an image
of a held-out source goes to `external` whole, so no training image duplicates (or shows the same
lesion as) an external one; such groups are counted in the leakage report. With the list empty
no external.csv is written and every output is what it was before the option existed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TypedDict

import pandas as pd

from dermai import params as params_mod
from dermai.core.groups import parse_groups
from dermai.core.schema import EXTERNAL
from dermai.core.splitting import (
    SPLITS,
    crossing_keys,
    crossing_pairs,
    ensure_presence,
    external_members,
    group_split,
    small_strata,
    stratified_image_split,
    train_policy_split,
)
from dermai.errors import DermaiError
from dermai.io.atomic import write_csv, write_json
from dermai.io.tables import read_duplicates, read_groups, read_index

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (sections: base, split)")
    p.add_argument("--index", required=True)
    p.add_argument("--groups", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--out", required=True, help="folder for {train,val,test}.csv (+ external.csv)")
    p.add_argument("--summary", required=True)
    p.add_argument("--leakage", required=True)


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


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.split
    fractions = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    df = read_index(args.index)
    groups = read_groups(args.groups)
    pairs = read_duplicates(args.pairs)
    if set(groups["image_id"]) != set(df["image_id"]) or len(groups) != len(df):
        raise DermaiError(f"{args.groups} does not cover the index exactly; rerun dedup")
    df = df.merge(groups, on="image_id", how="left", validate="one_to_one")
    held_out = list(cfg.external_source)
    try:
        members, spanning = external_members(
            df["source"].tolist(), df["leakage_group"].tolist(), held_out
        )
    except ValueError as exc:
        raise DermaiError(str(exc)) from exc
    ext = pd.Series(members, index=df.index)
    # With nothing held out, `rest` is the index itself: the default split is unchanged.
    rest = df[~ext] if held_out else df
    if held_out and rest.empty:
        raise DermaiError(
            f"split.external_source {held_out} holds out every image; nothing is left to train on"
        )
    # The naive baseline holds out the sources only (blind to groups); the final split holds
    # out their whole groups.
    of_source = df["source"].isin(held_out)
    naive_pool = df[~of_source] if held_out else df
    try:
        assign, moves = assign_splits(
            rest, fractions, cfg.duplicate_policy, prm.base.seed, prm.split.min_groups_for_presence
        )
        naive = pd.Series(
            stratified_image_split(
                (naive_pool["condition"] + "|" + naive_pool["age_group"]).tolist(),
                fractions,
                prm.base.seed,
            ),
            index=naive_pool.index,
        )
    except ValueError as exc:
        raise DermaiError(f"split: {exc}") from exc
    splits = (*SPLITS, EXTERNAL) if held_out else SPLITS
    if held_out:
        assign = pd.concat([assign, pd.Series(EXTERNAL, index=df.index[ext])]).loc[df.index]
        naive = pd.concat([naive, pd.Series(EXTERNAL, index=df.index[of_source])]).loc[df.index]

    out = Path(args.out)
    for s in splits:
        write_csv(out / f"{s}.csv", df[assign == s])
    if not held_out:
        (out / f"{EXTERNAL}.csv").unlink(missing_ok=True)  # a previous run's held-out site

    summary = (
        df.assign(split=assign)
        .groupby(["split", "condition", "age_group"], sort=True)
        .size()
        .rename("count")
        .reset_index()
    )
    summary["split"] = pd.Categorical(summary["split"], splits, ordered=True)
    write_csv(args.summary, summary.sort_values(["split", "condition", "age_group"]))

    strata = rest["condition"] + "|" + rest["age_group"]
    small = small_strata(strata.tolist())
    before = leakage_counts(df, naive, pairs, splits)
    after = leakage_counts(df, assign, pairs, splits)
    placed = {s: sorted(set(assign[strata.index][strata == s])) for s in small}
    report = {
        "policy": cfg.duplicate_policy,
        "seed": prm.base.seed,
        "images": len(df),
        "targets": {s: round(fractions[s] * len(rest), 1) for s in SPLITS},
        "before": {"method": "naive per-image stratified split", **before},
        "after": {"method": f"policy={cfg.duplicate_policy}", **after},
        "presence_moves": moves,
        "small_strata": {s: {"images": c, "splits": placed[s]} for s, c in sorted(small.items())},
    }
    if held_out:
        report[EXTERNAL] = {
            "sources": sorted(held_out),
            "rule": "a leakage group holding any image of a held-out source goes to external whole",
            "images": int(ext.sum()),
            "images_of_sources": int(df["source"].isin(held_out).sum()),
            "images_pulled_by_groups": int((ext & ~df["source"].isin(held_out)).sum()),
            "groups_spanning_sources": len(spanning),
        }
    write_json(args.leakage, report)
    for line in moves:
        log.info("moved so every condition is in every split: %s", line)
    for s in small:
        log.info(
            "stratum %s has %d image(s), fewer than %d splits: placed in %s",
            s,
            small[s],
            len(SPLITS),
            placed[s],
        )
    log.info(
        "split sizes %s (targets %s); leakage before: %s groups, after: %s",
        after["sizes"],
        report["targets"],
        before["cross_split_leakage_groups"],
        after["cross_split_leakage_groups"],
    )
    if after["cross_split_leakage_groups"]:  # pragma: no cover - guarded by construction
        raise DermaiError("split leaks: a leakage group crosses splits")
