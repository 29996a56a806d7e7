"""Find exact (SHA1) and perceptual (dHash) duplicates and merge them with metadata group ids
(e.g. lesion ids) into leakage groups: sets of images that must never straddle a split."""

from __future__ import annotations

import argparse
import logging

from dermai import params as params_mod
from dermai.core.dedup import build_groups, find_pairs, summarise
from dermai.io.atomic import write_csv, write_json
from dermai.io.tables import read_index

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (section: dedup)")
    p.add_argument("--index", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--groups", required=True)
    p.add_argument("--summary", required=True)


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    radius = prm.dedup.dhash_max_distance
    verify = prm.dedup.verify_max_distance
    index = read_index(args.index)
    pairs = find_pairs(index, radius, verify)
    groups = build_groups(index, pairs)
    summary = summarise(index, pairs, groups, radius, verify)
    write_csv(args.pairs, pairs)
    write_csv(args.groups, groups)
    write_json(args.summary, summary)
    log.info(
        "%d exact + %d perceptual pairs; %d leakage groups (largest %s)",
        summary["pairs_by_kind"]["exact"],
        summary["pairs_by_kind"]["perceptual"],
        summary["leakage_groups"],
        summary["largest_group"],
    )
