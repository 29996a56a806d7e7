"""Cross-set duplicate search against the brute-force oracle, on clustered random hashes."""

from __future__ import annotations

import numpy as np
import pytest

from dermai.core.crossdup import (
    HashSet,
    cross_duplicates,
    cross_duplicates_bruteforce,
    cross_only,
    shared_keys,
)


def _flip(value: int, bits: int, nbits: int, rng: np.random.Generator) -> int:
    for k in rng.choice(nbits, size=bits, replace=False):
        value ^= 1 << int(k)
    return value


def clustered(n: int, rng: np.random.Generator, centres: list[tuple[int, int]]) -> HashSet:
    """Items near a few shared centres (so A and B overlap), some byte-identical."""
    sha, dh, ph = [], [], []
    for _ in range(n):
        c = int(rng.integers(len(centres)))
        d0, p0 = centres[c]
        if rng.random() < 0.2:  # an exact copy of the centre image
            sha.append(f"{c:040x}")
            dh.append(f"{d0:016x}")
            ph.append(f"{p0:064x}")
            continue
        sha.append(f"{int(rng.integers(1 << 62)) + 10**6:040x}")
        dh.append(f"{_flip(d0, int(rng.integers(0, 14)), 64, rng):016x}")
        ph.append(f"{_flip(p0, int(rng.integers(0, 80)), 256, rng):064x}")
    return HashSet(sha, dh, ph)


def as_tuples(p) -> list[tuple]:
    return list(
        zip(
            p.a.tolist(),
            p.b.tolist(),
            p.exact.tolist(),
            p.distance.tolist(),
            p.verify_distance.tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("radius", "verify"), [(0, 256), (4, 40), (8, 48), (12, 256)])
def test_matches_bruteforce(seed, radius, verify):
    rng = np.random.default_rng(seed)
    centres = [
        (int(rng.integers(1 << 63)) * 2 + 1, int.from_bytes(rng.bytes(32), "big")) for _ in range(5)
    ]
    a = clustered(int(rng.integers(0, 40)), rng, centres)
    b = clustered(int(rng.integers(1, 40)), rng, centres)
    # One planted exact pair and one planted near pair (dHash 2 bits, pHash 10 bits away).
    d0, p0 = centres[0]
    a = HashSet(
        [*a.sha1, "e" * 40, "f" * 40],
        [*a.dhash, f"{d0:016x}", f"{d0:016x}"],
        [*a.phash, f"{p0:064x}", f"{p0:064x}"],
    )
    b = HashSet(
        [*b.sha1, "e" * 40, "1" * 40],
        [*b.dhash, f"{d0:016x}", f"{d0 ^ 3:016x}"],
        [*b.phash, f"{p0:064x}", f"{p0 ^ 1023:064x}"],
    )
    fast = cross_duplicates(a, b, radius, verify)
    slow = cross_duplicates_bruteforce(a, b, radius, verify)
    assert as_tuples(fast) == as_tuples(slow)
    assert (len(a) - 2, len(b) - 2, True) in zip(fast.a, fast.b, fast.exact, strict=True)
    if radius >= 2:
        assert (len(a) - 1, len(b) - 1, False) in zip(fast.a, fast.b, fast.exact, strict=True)


def test_within_set_pairs_are_not_reported():
    same = HashSet(["x" * 40] * 3, ["00" * 8] * 3, ["00" * 32] * 3)
    other = HashSet(["y" * 40], ["ff" * 8], ["ff" * 32])
    assert len(cross_duplicates(same, other, 8, 48)) == 0
    both = cross_duplicates(same, HashSet(["x" * 40], ["00" * 8], ["00" * 32]), 8, 48)
    assert both.a.tolist() == [0, 1, 2] and both.b.tolist() == [0, 0, 0]
    assert both.exact.all()


def test_cross_only_reorients_and_renumbers():
    pairs = np.array([[0, 1, 5], [4, 1, 3], [3, 4, 2], [2, 6, 0]])
    assert cross_only(pairs, 3).tolist() == [[1, 1, 3], [2, 3, 0]]
    assert cross_only(np.empty((0, 2), dtype=np.int64), 3).shape == (0, 2)


def test_shared_keys_ignores_empty():
    assert shared_keys(["", "L1", "L2"], ["L2", "", "L3", "L2"]) == ["L2"]
