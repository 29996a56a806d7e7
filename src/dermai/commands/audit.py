"""Cross-dataset leakage audit: exact and perceptual duplicates BETWEEN two image sets.

A and B are each an index CSV (`dermai index`), a split CSV (data/splits/*.csv) or an image
folder (hashed on the fly exactly as `dermai index` hashes). Duplicates are found with the same
search and verification as `dermai dedup` (params `dedup.*`, overridable by flags); pairs within
one set are not reported. Writes a CSV of pairs and prints a one-line verdict on stdout; group
ids (e.g. lesion ids) present on both sides are counted too. Exits 0 whether or not it finds a
leak, unless --fail-on-leak.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import time
from pathlib import Path

import pandas as pd

from dermai import params as params_mod
from dermai.core.crossdup import HashSet, cross_duplicates, shared_keys
from dermai.errors import DermaiError
from dermai.io import hashtable
from dermai.io.atomic import write_csv

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    "a_image_id",
    "a_path",
    "b_image_id",
    "b_path",
    "kind",
    "distance",
    "verify_distance",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="index CSV, split CSV or image folder")
    p.add_argument("b", help="index CSV, split CSV or image folder")
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file (dedup.*, index.extensions/max_pixels/workers); optional",
    )
    p.add_argument("--out", default="reports/audit_pairs.csv", help="CSV of the pairs found")
    p.add_argument(
        "--dhash-max-distance", type=int, default=None, help="overrides dedup.dhash_max_distance"
    )
    p.add_argument(
        "--verify-max-distance", type=int, default=None, help="overrides dedup.verify_max_distance"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes for hashing a folder (overrides index.workers; 0 = all cores)",
    )
    p.add_argument("--fail-on-leak", action="store_true", help="exit 1 when a leak is found")


def settings(params_path: str) -> tuple[int, int, list[str], int, int]:
    """(dHash radius, pHash verify, extensions, max_pixels, workers) from params, or defaults."""
    prm = params_mod.load_or_defaults(params_path)
    d, i = prm.dedup, prm.index
    return d.dhash_max_distance, d.verify_max_distance, list(i.extensions), i.max_pixels, i.workers


def hash_set(df: pd.DataFrame) -> HashSet:
    return HashSet(df["sha1"].tolist(), df["dhash"].tolist(), df["phash"].tolist())


def pairs_frame(a: pd.DataFrame, b: pd.DataFrame, radius: int, verify: int) -> pd.DataFrame:
    """One row per duplicate pair between A and B (sorted by A row, then B row)."""
    found = cross_duplicates(hash_set(a), hash_set(b), radius, verify)
    return pd.DataFrame(
        {
            "a_image_id": a["image_id"].to_numpy()[found.a],
            "a_path": a["path"].to_numpy()[found.a],
            "b_image_id": b["image_id"].to_numpy()[found.b],
            "b_path": b["path"].to_numpy()[found.b],
            "kind": ["exact" if e else "perceptual" for e in found.exact],
            "distance": found.distance,
            "verify_distance": found.verify_distance,
        },
        columns=PAIR_COLUMNS,
    )


def shared_groups(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Group ids on both sides: every `key=value` of the index's `groups` column (lesion and
    patient ids, index.group_keys) when either side has one, else the plain `group_id`."""
    if (a["groups"] != "").any() or (b["groups"] != "").any():

        def tokens(df: pd.DataFrame) -> list[str]:
            return [t for cell in df["groups"] for t in cell.split(";") if "=" in t]

        return shared_keys(tokens(a), tokens(b))
    return shared_keys(a["group_id"].tolist(), b["group_id"].tolist())


def _load(source: Path, extensions: list[str], max_pixels: int, workers: int) -> pd.DataFrame:
    if not source.exists():
        raise DermaiError(f"not found: {source} (give an index CSV, split CSV or image folder)")
    table, rejects = hashtable.load(source, extensions, max_pixels, workers)
    for path, reason in zip(rejects["path"], rejects["reason"], strict=True):
        log.warning("%s: skipped %s: %s", source, path, reason)
    if len(rejects):
        log.warning("%s: %d file(s) could not be hashed and are not audited", source, len(rejects))
    if table.empty:
        raise DermaiError(f"no hashable images in {source}")
    return table


def run(args: argparse.Namespace) -> None:
    radius, verify, extensions, max_pixels, workers = settings(args.params)
    radius = radius if args.dhash_max_distance is None else args.dhash_max_distance
    verify = verify if args.verify_max_distance is None else args.verify_max_distance
    if not 0 <= radius <= 32:
        raise DermaiError(f"dhash max distance must be in 0..32, got {radius}")
    if not 0 <= verify <= 256:
        raise DermaiError(f"verify max distance must be in 0..256, got {verify}")
    workers = args.workers if args.workers is not None else workers
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    a = _load(Path(args.a), extensions, max_pixels, workers)
    b = _load(Path(args.b), extensions, max_pixels, workers)
    t1 = time.perf_counter()
    pairs = pairs_frame(a, b, radius, verify)
    shared = shared_groups(a, b)
    t2 = time.perf_counter()
    write_csv(args.out, pairs)
    n_exact = int((pairs["kind"] == "exact").sum())
    n_near = len(pairs) - n_exact
    leak = bool(len(pairs) or shared)
    if shared:
        log.info(
            "shared group ids by key: %s",
            dict(
                sorted(
                    collections.Counter(
                        t.split("=", 1)[0] if "=" in t else "group_id" for t in shared
                    ).items()
                )
            ),
        )
    log.info(
        "loaded/hashed in %.2f s, searched in %.2f s (dHash <= %d, pHash <= %d); pairs in %s",
        t1 - t0,
        t2 - t1,
        radius,
        verify,
        args.out,
    )
    print(
        f"audit: {n_exact} exact, {n_near} perceptual duplicates, {len(shared)} shared group "
        f"ids between {args.a} (n={len(a)}) and {args.b} (n={len(b)}): "
        f"{'LEAK' if leak else 'clean'}"
    )
    if leak and args.fail_on_leak:
        raise DermaiError(
            f"leak: {len(pairs)} duplicate pair(s), {len(shared)} shared group "
            f"id(s) between {args.a} and {args.b} (see {args.out})"
        )


EXCLUDED_COLUMNS = ["image", "kind", "distance", "verify_distance", "train_image_id", "train_path"]


def training_duplicates(
    folder: Path,
    names: list[str],
    files: list[Path | str],
    train_index: Path,
    params_path: str,
    max_pixels: int,
    out_csv: Path,
) -> set[int]:
    """Positions in `names` of external images that duplicate an image of `train_index`.

    `files`: per name its file in `folder`, as the caller's one walk found it, or the reason it
    has none. Each duplicate is logged and listed (with every training image it duplicates) in
    `out_csv`. Names that cannot be found or read are left to the caller, which reports them as
    skipped.
    """
    radius, verify, _, _, _ = settings(params_path)
    train = hashtable.read_hash_table(train_index)
    found: dict[Path, list[int]] = {}
    for pos, path in enumerate(files):
        if not isinstance(path, str):
            found.setdefault(path, []).append(pos)
    table, _ = hashtable.hash_files(folder, list(found), max_pixels)
    pos_of = {p.relative_to(folder).as_posix(): k for p, k in found.items()}
    pairs = pairs_frame(table, train, radius, verify)
    listed = pd.DataFrame(
        {
            "image": [names[pos_of[p][0]] for p in pairs["a_path"]],
            "kind": pairs["kind"],
            "distance": pairs["distance"],
            "verify_distance": pairs["verify_distance"],
            "train_image_id": pairs["b_image_id"],
            "train_path": pairs["b_path"],
        },
        columns=EXCLUDED_COLUMNS,
    )
    write_csv(out_csv, listed)
    excluded = {k for p in pairs["a_path"] for k in pos_of[p]}
    for image, grp in listed.groupby("image", sort=True):
        log.warning(
            "excluded %s: %s duplicate of training image(s) %s",
            image,
            "/".join(sorted(set(grp["kind"]))),
            ", ".join(grp["train_image_id"]),
        )
    log.info(
        "excluded %d of %d external images as duplicates of %s (dHash <= %d, pHash <= %d)",
        len(excluded),
        len(names),
        train_index,
        radius,
        verify,
    )
    return excluded
