"""Duplicates BETWEEN two image sets (A and B), never within one: the cross-dataset leakage audit.

Same rules as `dedup`, so an audit and a split agree on what a duplicate is: equal SHA1 is an
exact pair; otherwise a 64-bit dHash within `radius` (found by multi-index hashing) verified by
a 256-bit pHash within `verify` is a perceptual pair. Both sets are searched together and only
pairs with one item on each side are kept, so the search stays sub-quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dermai.core.groups import exact_pairs
from dermai.core.neardup import hex_to_uint64, pairs_within_radius, phash_distances

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HashSet:
    """The hashes of one image set, in row order (as an index CSV holds them)."""

    sha1: Sequence[str]
    dhash: Sequence[str]
    phash: Sequence[str]

    def __len__(self) -> int:
        return len(self.sha1)


@dataclass(frozen=True)
class CrossPairs:
    """Pairs (a[k], b[k]) of row numbers in A and in B, sorted by (a, b)."""

    a: I64
    b: I64
    exact: npt.NDArray[np.bool_]
    distance: I64  # dHash-64 Hamming distance
    verify_distance: I64  # pHash-256 Hamming distance

    def __len__(self) -> int:
        return len(self.a)


def cross_only(pairs: npt.ArrayLike, n_a: int) -> I64:
    """Rows (i, j, ...) of pairs over the concatenation A + B that link A to B, as (A row,
    B row, ...): i < n_a <= j after reorientation, B rows renumbered from 0."""
    p = np.asarray(pairs, dtype=np.int64)
    if p.size == 0:
        return p.reshape(0, max(p.shape[1] if p.ndim == 2 else 2, 2))
    lo = np.minimum(p[:, 0], p[:, 1])
    hi = np.maximum(p[:, 0], p[:, 1])
    keep = (lo < n_a) & (hi >= n_a)
    out = p[keep].copy()
    out[:, 0] = lo[keep]
    out[:, 1] = hi[keep] - n_a
    return out


def _finish(a: I64, b: I64, exact: npt.NDArray[np.bool_], both: HashSet, n_a: int) -> CrossPairs:
    order = np.lexsort((b, a))
    a, b, exact = a[order], b[order], exact[order]
    d64 = hex_to_uint64(list(both.dhash))
    dist = np.bitwise_count(d64[a] ^ d64[b + n_a]).astype(np.int64)
    vdist = phash_distances(list(both.phash), a, b + n_a)
    return CrossPairs(a, b, exact, dist, vdist)


def _concat(a: HashSet, b: HashSet) -> HashSet:
    return HashSet([*a.sha1, *b.sha1], [*a.dhash, *b.dhash], [*a.phash, *b.phash])


def cross_duplicates(a: HashSet, b: HashSet, radius: int, verify: int) -> CrossPairs:
    """Every exact and verified perceptual duplicate pair between A and B."""
    n_a = len(a)
    both = _concat(a, b)
    sha = np.asarray(both.sha1, dtype=object)
    ex = cross_only(exact_pairs(list(both.sha1)), n_a)
    near = pairs_within_radius(hex_to_uint64(list(both.dhash)), radius)
    near = cross_only(near[:, :2], n_a)
    near = near[sha[near[:, 0]] != sha[near[:, 1] + n_a]]  # equal bytes: already exact
    keep = phash_distances(list(both.phash), near[:, 0], near[:, 1] + n_a) <= verify
    near = near[keep]
    ia = np.concatenate([ex[:, 0], near[:, 0]])
    ib = np.concatenate([ex[:, 1], near[:, 1]])
    exact = np.concatenate([np.ones(len(ex), bool), np.zeros(len(near), bool)])
    return _finish(ia, ib, exact, both, n_a)


def cross_duplicates_bruteforce(a: HashSet, b: HashSet, radius: int, verify: int) -> CrossPairs:
    """O(|A|·|B|) oracle for :func:`cross_duplicates` (tests only)."""
    ia, ib, exact = [], [], []
    for i in range(len(a)):
        for j in range(len(b)):
            if a.sha1[i] == b.sha1[j]:
                is_exact = True
            elif (int(a.dhash[i], 16) ^ int(b.dhash[j], 16)).bit_count() <= radius and (
                int(a.phash[i], 16) ^ int(b.phash[j], 16)
            ).bit_count() <= verify:
                is_exact = False
            else:
                continue
            ia.append(i)
            ib.append(j)
            exact.append(is_exact)
    return _finish(
        np.array(ia, dtype=np.int64),
        np.array(ib, dtype=np.int64),
        np.array(exact, dtype=bool),
        _concat(a, b),
        len(a),
    )


def shared_keys(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """Non-empty group ids (e.g. lesion ids) present on both sides, sorted."""
    return sorted((set(a) & set(b)) - {""})
