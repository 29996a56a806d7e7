"""Duplicates and leakage groups of an index: the exact (SHA1) and verified perceptual (dHash
candidates, pHash-256 check) pairs, merged with the metadata group ids (lesion, patient, ...)
into leakage groups, sets of images that must never straddle a split. Pure: the index table in,
tables and a summary out (`dermai dedup` reads and writes them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermai.core.groups import exact_pairs, leakage_components, parse_groups
from dermai.core.neardup import hex_to_uint64, pairs_within_radius, phash_distances


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
