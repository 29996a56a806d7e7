"""Find exact (SHA1) and perceptual (dHash) duplicates and merge them with metadata group ids
(e.g. lesion ids) into leakage groups: sets of images that must never straddle a split."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from dermai import params as params_mod
from dermai.core.groups import exact_pairs, leakage_components, parse_groups
from dermai.core.neardup import hex_to_uint64, pairs_within_radius, phash_distances
from dermai.io.atomic import write_csv, write_json
from dermai.io.tables import read_index

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (section: dedup)")
    p.add_argument("--index", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--groups", required=True)
    p.add_argument("--summary", required=True)


def find_pairs(index: pd.DataFrame, radius: int, verify: int) -> pd.DataFrame:
    """One row per duplicate pair: a < b by image_id, kind exact|perceptual, dHash distance and
    the pHash-256 distance that verified it."""
    ids = index["image_id"].to_numpy()
    sha = index["sha1"].to_numpy()
    hashes = hex_to_uint64(index["dhash"].tolist())
    near = pairs_within_radius(hashes, radius)
    ex = exact_pairs(index["sha1"].tolist())
    near = near[sha[near[:, 0]] != sha[near[:, 1]]]
    pdist_near = phash_distances(index["phash"].tolist(), near[:, 0], near[:, 1])
    keep = pdist_near <= verify
    i = np.concatenate([ex[:, 0], near[keep, 0]])
    j = np.concatenate([ex[:, 1], near[keep, 1]])
    kind = ["exact"] * len(ex) + ["perceptual"] * int(keep.sum())
    a, b = np.minimum(ids[i], ids[j]), np.maximum(ids[i], ids[j])
    df = pd.DataFrame(
        {
            "a": a.astype(str),
            "b": b.astype(str),
            "kind": kind,
            "distance": np.bitwise_count(hashes[i] ^ hashes[j]).astype(np.int64),
            "verify_distance": phash_distances(index["phash"].tolist(), i, j),
        }
    )
    return df.sort_values(["a", "b"], kind="stable").reset_index(drop=True)


def group_keys(index: pd.DataFrame) -> dict[str, list[str]]:
    """Every metadata group key of the index (lesion_id, patient_id, ...) -> value per row."""
    return parse_groups(index["groups"].tolist()) if "groups" in index.columns else {}


def build_groups(index: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    pos = {iid: k for k, iid in enumerate(index["image_id"])}
    edges = np.array(
        [(pos[a], pos[b]) for a, b in zip(pairs["a"], pairs["b"], strict=True)], dtype=np.int64
    ).reshape(-1, 2)
    comp = leakage_components(
        len(index), edges, index["group_id"].tolist(), *group_keys(index).values()
    )
    width = max(6, len(str(int(comp.max()) if len(comp) else 0)))
    return pd.DataFrame(
        {
            "image_id": index["image_id"],
            "leakage_group": [f"LG{c:0{width}d}" for c in comp],
        }
    )


def summarise(
    index: pd.DataFrame, pairs: pd.DataFrame, groups: pd.DataFrame, radius: int, verify: int
) -> dict:
    sizes = groups["leakage_group"].value_counts()
    largest = sizes.sort_index().sort_values(ascending=False, kind="stable")
    meta = index.loc[index["group_id"] != "", "group_id"]
    return {
        "images": len(index),
        "dhash_max_distance": radius,
        "verify_max_distance": verify,
        "pairs_by_kind": {k: int((pairs["kind"] == k).sum()) for k in ("exact", "perceptual")},
        "leakage_groups": len(sizes),
        "multi_image_groups": int((sizes > 1).sum()),
        "images_in_multi_image_groups": int(sizes[sizes > 1].sum()),
        "largest_group": {"id": str(largest.index[0]), "size": int(largest.iloc[0])}
        if len(largest)
        else None,
        "metadata_groups": int(meta.nunique()),
        "metadata_groups_by_key": {
            k: {
                "groups": len({x for x in v if x}),
                "images_sharing": int(pd.Series([x for x in v if x]).duplicated(keep=False).sum()),
            }
            for k, v in sorted(group_keys(index).items())
        },
    }


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
