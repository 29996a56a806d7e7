"""Leakage-safe train/val/test split, stratified on condition x age group.

Leakage groups (duplicates + lesion ids) are assigned whole. `split.duplicate_policy`:
`group` distributes whole groups by stratified group k-fold; `train` is the seed project's
policy (naive split, then every crossing group moved into train). The leakage report compares the
final split with a naive per-image stratified split.

`split.folds: K` (K >= 2) also writes `folds.csv`: grouped, stratified K-fold over the same images
(core.folds), for the cross-validation stages; with 0 (off) no such file is written.

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

from dermai import params as params_mod
from dermai.core import folds, splitting
from dermai.core.schema import EXTERNAL, FOLDS_FILE, SPLITS
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


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    cfg = prm.split
    fractions = cfg.fractions()
    df = read_index(args.index)
    groups = read_groups(args.groups)
    pairs = read_duplicates(args.pairs)
    if set(groups["image_id"]) != set(df["image_id"]) or len(groups) != len(df):
        raise DermaiError(f"{args.groups} does not cover the index exactly; rerun dedup")
    df = df.merge(groups, on="image_id", how="left", validate="one_to_one")
    held_out = list(cfg.external_source)
    policy, seed = cfg.duplicate_policy, prm.base.seed
    try:
        split = splitting.split_index(
            df, fractions, policy, seed, cfg.min_groups_for_presence, held_out
        )
    except ValueError as exc:
        raise DermaiError(str(exc)) from exc

    out = Path(args.out)
    for s in split.splits:
        write_csv(out / f"{s}.csv", df[split.assign == s])
    if not held_out:
        (out / f"{EXTERNAL}.csv").unlink(missing_ok=True)  # a previous run's held-out site
    write_csv(args.summary, splitting.split_summary(df, split))
    report = splitting.leakage_report(df, pairs, split, fractions, policy, seed, held_out)
    (out / FOLDS_FILE).unlink(missing_ok=True)  # folds off: no file, every output as before
    if cfg.folds:  # cross-validation folds over every image the fractions apply to
        rest = split.rest
        try:
            of, moves = folds.assign_folds(
                rest["condition"].tolist(),
                rest["age_group"].tolist(),
                rest["leakage_group"].tolist(),
                cfg.folds,
                seed,
                cfg.min_groups_for_presence,
            )
        except ValueError as exc:
            raise DermaiError(str(exc)) from exc
        table = folds.fold_table(rest, of)
        write_csv(out / FOLDS_FILE, table)
        report["folds"] = folds.fold_report(table, cfg.folds, moves)
        log.info("%d-fold cross-validation folds: sizes %s", cfg.folds, report["folds"]["sizes"])
    write_json(args.leakage, report)
    for line in split.moves:
        log.info("moved so every condition is in every split: %s", line)
    for s, small in report["small_strata"].items():
        log.info(
            "stratum %s has %d image(s), fewer than %d splits: placed in %s",
            s,
            small["images"],
            len(SPLITS),
            small["splits"],
        )
    before, after = report["before"], report["after"]
    log.info(
        "split sizes %s (targets %s); leakage before: %s groups, after: %s",
        after["sizes"],
        report["targets"],
        before["cross_split_leakage_groups"],
        after["cross_split_leakage_groups"],
    )
    if after["cross_split_leakage_groups"]:  # pragma: no cover - guarded by construction
        raise DermaiError("split leaks: a leakage group crosses splits")
