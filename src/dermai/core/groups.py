"""Leakage groups: connected components of duplicate pairs and shared metadata group ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def exact_pairs(sha1: Sequence[str]) -> np.ndarray:
    """All (i, j), i < j, whose SHA1 is equal; shape (k, 2), sorted."""
    order: dict[str, list[int]] = {}
    for i, h in enumerate(sha1):
        order.setdefault(h, []).append(i)
    out = [
        (a, b)
        for idx in order.values()
        if len(idx) > 1
        for k, a in enumerate(idx)
        for b in idx[k + 1 :]
    ]
    arr = np.array(sorted(out), dtype=np.int64).reshape(-1, 2)
    return arr


def parse_groups(cells: Sequence[str]) -> dict[str, list[str]]:
    """Index `groups` cells ("lesion_id=L1;patient_id=P1") -> key -> value per row ("" = none).

    Keys come in order of first appearance, so the result depends only on the cells."""
    parsed = [
        dict(tok.split("=", 1) for tok in c.split(";") if "=" in tok) if c else {} for c in cells
    ]
    keys: dict[str, None] = {}
    for d in parsed:
        keys.update(dict.fromkeys(d))
    return {k: [d.get(k, "") for d in parsed] for k in keys}


def leakage_components(n: int, pairs: np.ndarray, *group_columns: Sequence[str]) -> np.ndarray:
    """Component number per item, numbered 0.. in order of each component's first item.

    Items are joined when a pair links them or when they share a non-empty value in any one
    group column (e.g. a lesion id, a patient id; values of different columns never match each
    other). Union-find via scipy's connected components.
    """
    edges = [np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[:, :2]]
    first: dict[tuple[int, str], int] = {}
    meta = []
    for col, group_ids in enumerate(group_columns):
        for i, g in enumerate(group_ids):
            if not g:
                continue
            if (col, g) in first:
                meta.append((first[col, g], i))
            else:
                first[col, g] = i
    if meta:
        edges.append(np.array(meta, dtype=np.int64))
    e = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(e), dtype=np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance so numbering depends only on row order, not scipy internals.
    _, first_idx, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty_like(first_idx)
    rank[np.argsort(first_idx, kind="stable")] = np.arange(len(first_idx))
    return rank[inverse]
