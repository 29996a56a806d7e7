from __future__ import annotations

from itertools import combinations

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dermai.core.neardup import (
    choose_chunks,
    hex_to_uint64,
    pairs_within_radius,
    pairs_within_radius_bruteforce,
    popcount64,
    uint64_to_hex,
)

ONE = np.uint64(1)


def naive_pairs(hashes: list[int], radius: int) -> list[tuple[int, int, int]]:
    """Pure-Python reference, independent of numpy popcount."""
    return [
        (i, j, bin(hashes[i] ^ hashes[j]).count("1"))
        for i, j in combinations(range(len(hashes)), 2)
        if bin(hashes[i] ^ hashes[j]).count("1") <= radius
    ]


def planted(n: int, seed: int, dup_frac: float = 0.1, near_frac: float = 0.2) -> np.ndarray:
    """Random hashes plus exact copies and copies with 1..12 bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    if n < 2:
        return h
    for frac, max_flips in ((dup_frac, 0), (near_frac, 12)):
        k = max(1, int(n * frac))
        src = rng.integers(0, n, size=k)
        dst = rng.integers(0, n, size=k)
        for s, t in zip(src, dst, strict=True):
            v = h[s]
            for bit in rng.choice(64, size=rng.integers(0, max_flips + 1), replace=False):
                v ^= ONE << np.uint64(bit)
            h[t] = v
    return h


def clustered(n: int, n_clusters: int, max_flips: int, seed: int) -> np.ndarray:
    """Like real dHashes: a few centres, each hash a centre with a few bits flipped."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, np.iinfo(np.uint64).max, size=n_clusters, dtype=np.uint64)
    h = centres[rng.integers(0, n_clusters, size=n)]
    flips = rng.integers(0, max_flips + 1, size=n)
    for k in range(max_flips):
        bit = rng.integers(0, 64, size=n).astype(np.uint64)
        h = np.where(flips > k, h ^ (ONE << bit), h)
    return h


def assert_well_formed(pairs: np.ndarray, hashes: np.ndarray, radius: int) -> None:
    assert pairs.dtype == np.int64
    assert pairs.ndim == 2 and pairs.shape[1] == 3
    if pairs.size:
        assert (pairs[:, 0] < pairs[:, 1]).all()
        keys = pairs[:, 0] * len(hashes) + pairs[:, 1]
        assert (np.diff(keys) > 0).all(), "rows must be sorted by (i, j) and unique"
        dist = popcount64(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
        np.testing.assert_array_equal(pairs[:, 2], dist)
        assert (pairs[:, 2] <= radius).all()


# --- hex and popcount -------------------------------------------------------------------


def test_hex_to_uint64_known_values() -> None:
    got = hex_to_uint64(["0000000000000000", "ffffffffffffffff", "8000000000000001", "00ff" * 4])
    assert got.dtype == np.uint64
    assert got.tolist() == [0, 2**64 - 1, 2**63 + 1, 0x00FF00FF00FF00FF]


def test_hex_to_uint64_accepts_uppercase_and_round_trips() -> None:
    hexes = ["0123456789ABCDEF", "fedcba9876543210"]
    got = hex_to_uint64(hexes)
    assert got.tolist() == [0x0123456789ABCDEF, 0xFEDCBA9876543210]
    assert uint64_to_hex(got) == [h.lower() for h in hexes]


def test_hex_to_uint64_empty() -> None:
    got = hex_to_uint64([])
    assert got.dtype == np.uint64 and got.shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [
        "123",
        "0123456789abcdef0",
        "0x23456789abcdef",
        "0123456789abcdeg",
        " 123456789abcdef",
        "é" * 16,
    ],
)
def test_hex_to_uint64_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        hex_to_uint64(["0123456789abcdef", bad])


def test_hex_to_uint64_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        hex_to_uint64(["0123456789abcdef", float("nan")])  # type: ignore[list-item]


def test_hex_matches_imagehash_dhash_and_its_distance() -> None:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)) for _ in range(4)]
    hashes = [imagehash.dhash(im, hash_size=8) for im in images]
    values = hex_to_uint64([str(h) for h in hashes])
    assert values.tolist() == [int(str(h), 16) for h in hashes]
    for a, b in combinations(range(4), 2):
        assert int(popcount64(values[a] ^ values[b])) == hashes[a] - hashes[b]


def test_popcount64_matches_python() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64),
            rng.integers(0, 2**63, 100).astype(np.uint64) * 2 + 1,
        ]
    )
    assert popcount64(x).tolist() == [bin(int(v)).count("1") for v in x]


# --- pairs_within_radius --------------------------------------------------------------


def test_golden_small_example() -> None:
    hashes = np.array([0b0000, 0b0001, 0b0011, 0b0000, 2**64 - 1, 0b0111], dtype=np.uint64)
    got = pairs_within_radius(hashes, 2)
    expected = [
        [0, 1, 1],
        [0, 2, 2],
        [0, 3, 0],
        [1, 2, 1],
        [1, 3, 1],
        [1, 5, 2],
        [2, 3, 2],
        [2, 5, 1],
    ]
    assert got.tolist() == expected
    assert pairs_within_radius_bruteforce(hashes, 2).tolist() == expected
    assert naive_pairs([int(v) for v in hashes], 2) == [tuple(r) for r in expected]


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("fn", [pairs_within_radius, pairs_within_radius_bruteforce])
def test_fewer_than_two_hashes_give_no_pairs(n: int, fn) -> None:  # type: ignore[no-untyped-def]
    got = fn(np.zeros(n, dtype=np.uint64), 5)
    assert got.shape == (0, 3) and got.dtype == np.int64


def test_no_pairs_returns_empty_well_formed() -> None:
    hashes = np.array([0, 2**64 - 1, 0x00000000FFFFFFFF], dtype=np.uint64)
    got = pairs_within_radius(hashes, 3)
    assert got.shape == (0, 3) and got.dtype == np.int64


def test_matches_pure_python_reference() -> None:
    hashes = planted(60, seed=11)
    for radius in (0, 3, 9):
        got = pairs_within_radius(hashes, radius)
        assert [tuple(r) for r in got.tolist()] == naive_pairs([int(v) for v in hashes], radius)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [2, 3, 7, 40, 400])
def test_equals_bruteforce_on_planted_hashes(seed: int, n: int) -> None:
    hashes = planted(n, seed)
    for radius in range(11):
        got = pairs_within_radius(hashes, radius)
        np.testing.assert_array_equal(got, pairs_within_radius_bruteforce(hashes, radius))
        assert_well_formed(got, hashes, radius)


@pytest.mark.parametrize("radius", [1, 4, 8, 10])
def test_every_chunk_count_and_tiny_batches_agree(radius: int) -> None:
    """Forcing the multi-index path and splitting buckets across batches must not change output."""
    hashes = np.concatenate([planted(300, seed=radius), clustered(300, 5, 4, seed=radius)])
    expected = pairs_within_radius_bruteforce(hashes, radius)
    assert len(expected) > 0
    plans = [(radius + 1, 1), (radius + 1, 7)] + [
        (m, 1 << 20) for m in range(radius + 1, radius + 4)
    ]
    for chunks, batch in plans:
        got = pairs_within_radius(hashes, radius, chunks=chunks, batch_pairs=batch)
        np.testing.assert_array_equal(got, expected, err_msg=f"chunks={chunks} batch={batch}")


def test_clustered_hashes_with_auto_plan() -> None:
    hashes = clustered(3000, 20, 5, seed=4)
    for radius in (2, 6, 8):
        got = pairs_within_radius(hashes, radius)
        np.testing.assert_array_equal(got, pairs_within_radius_bruteforce(hashes, radius))
        assert len(got) > 1000


def test_one_big_group_of_equal_hashes_in_small_batches() -> None:
    n = 300
    hashes = np.full(n, 0xDEADBEEF, dtype=np.uint64)
    hashes[::50] ^= ONE  # a few at distance 1
    got = pairs_within_radius(hashes, 1, batch_pairs=100)
    assert len(got) == n * (n - 1) // 2
    np.testing.assert_array_equal(got, pairs_within_radius_bruteforce(hashes, 1))
    assert set(got[:, 2].tolist()) == {0, 1}


def test_radius_64_returns_every_pair() -> None:
    hashes = planted(30, seed=5)
    got = pairs_within_radius(hashes, 64)
    assert len(got) == 30 * 29 // 2
    assert_well_formed(got, hashes, 64)


def test_accepts_python_ints_and_int64_bit_patterns() -> None:
    big = [2**64 - 1, 2**64 - 2, 5]
    assert pairs_within_radius(big, 1).tolist() == [[0, 1, 1]]
    as_int64 = np.array([-1, -2, 5], dtype=np.int64)  # same bit patterns as `big`
    assert pairs_within_radius(as_int64, 1).tolist() == [[0, 1, 1]]


@pytest.mark.parametrize(
    ("hashes", "radius", "kwargs"),
    [
        (np.zeros((2, 2), dtype=np.uint64), 1, {}),
        (np.array([0.5, 1.5]), 1, {}),
        ([-1, 3], 1, {}),
        (np.zeros(3, dtype=np.uint64), -1, {}),
        (np.zeros(3, dtype=np.uint64), 1.5, {}),
        (np.zeros(3, dtype=np.uint64), 4, {"chunks": 4}),
        (np.zeros(3, dtype=np.uint64), 4, {"batch_pairs": 0}),
    ],
)
def test_rejects_bad_arguments(hashes, radius, kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        pairs_within_radius(hashes, radius, **kwargs)


def test_choose_chunks_picks_a_valid_plan() -> None:
    random = np.unique(planted(20_000, seed=6, dup_frac=0, near_frac=0))
    m = choose_chunks(random, 6)
    assert m is not None and 6 < m <= 64, "20k random hashes at radius 6 should use the index"
    assert choose_chunks(random[:50], 6) is None, "50 hashes are cheaper to compare directly"


@st.composite
def near_hash_sets(draw: st.DrawFn) -> tuple[list[int], int]:
    """A few base hashes and many copies of them with a few bits flipped."""
    bases = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6))
    out = list(bases)
    for _ in range(draw(st.integers(0, 40))):
        v = draw(st.sampled_from(bases))
        for bit in draw(st.lists(st.integers(0, 63), max_size=10)):
            v ^= 1 << bit
        out.append(v)
    return draw(st.permutations(out)), draw(st.integers(0, 12))


@settings(max_examples=150, deadline=None)
@given(case=near_hash_sets(), batch=st.sampled_from([1, 3, 1 << 20]), extra=st.integers(1, 3))
def test_property_equals_bruteforce(case: tuple[list[int], int], batch: int, extra: int) -> None:
    values, radius = case
    hashes = np.array(values, dtype=np.uint64)
    expected = pairs_within_radius_bruteforce(hashes, radius)
    assert [tuple(r) for r in expected.tolist()] == naive_pairs(values, radius)
    chunks = min(64, radius + extra)
    got = pairs_within_radius(hashes, radius, chunks=chunks, batch_pairs=batch)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(pairs_within_radius(hashes, radius), expected)
