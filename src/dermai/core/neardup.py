"""All pairs of 64-bit perceptual hashes within a Hamming radius, without the O(n²) scan.

Multi-index hashing with the generalised pigeonhole principle: split the 64 bits into
``m > radius`` contiguous chunks. Two hashes at distance ``d <= radius`` differ in at most
``radius`` chunks, so they agree exactly on at least ``s = m - radius`` chunks. For every
``s``-subset of chunks we sort the hashes by the concatenated subset bits and only compare
hashes that share that key. A pair is reported only by the first subset it agrees on (its
lowest ``s`` agreeing chunks), so nothing is emitted twice and no global dedupe is needed.

Equal hashes are collapsed first: real image sets hold exact duplicates (re-encoded or
re-uploaded images), and each equal pair would otherwise be found in every subset. Every
stage works in bounded batches of candidate pairs, so working memory stays bounded on skewed
(clustered) data; only the output itself grows with the number of pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import combinations
from math import comb

import numpy as np
import numpy.typing as npt

__all__ = [
    "choose_chunks",
    "hex_to_uint64",
    "pairs_within_radius",
    "pairs_within_radius_bruteforce",
    "popcount64",
    "uint64_to_hex",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

HASH_BITS = 64
HEX_CHARS = 16
DEFAULT_BATCH_PAIRS = 1 << 20
_D_BITS = 7  # distance (0..64) packed into the low bits of the sort key
_MAX_N = 1 << 28  # keeps (i * n + j) << _D_BITS inside int64

# Approximate costs in ns (2-core x86, numpy 2.4) used only to pick the chunk count: per hash
# per key subset (build + sort), fixed per subset, per candidate pair, per brute-force pair.
_COST_KEY = 11.0
_COST_SUBSET = 60_000.0
_COST_CANDIDATE = 30.0
_COST_BRUTE = 0.7

_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _k, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _k
for _k, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _k


def _empty_pairs() -> I64:
    return np.empty((0, 3), dtype=np.int64)


def hex_to_uint64(hexes: Sequence[str]) -> U64:
    """Parse 16-hex-char dHash strings (imagehash ``str(hash)``) strictly: no ``0x``, no spaces."""
    hexes = list(hexes)
    n = len(hexes)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    try:
        raw = "".join(hexes).encode("ascii")
    except (TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"hashes must be ASCII hex strings: {exc}") from None
    bad_len = [h for h in hexes if len(h) != HEX_CHARS]
    if bad_len or len(raw) != n * HEX_CHARS:
        raise ValueError(f"hashes must be {HEX_CHARS} hex characters, got {bad_len[:1]!r}")
    nibbles = _HEX_LUT[np.frombuffer(raw, dtype=np.uint8)].reshape(n, HEX_CHARS)
    bad = np.flatnonzero((nibbles == 255).any(axis=1))
    if bad.size:
        raise ValueError(f"not a hex hash: {hexes[int(bad[0])]!r}")
    out = np.zeros(n, dtype=np.uint64)
    for k in range(HEX_CHARS):
        out = (out << np.uint64(4)) | nibbles[:, k].astype(np.uint64)
    return out


def uint64_to_hex(hashes: npt.ArrayLike) -> list[str]:
    """Inverse of :func:`hex_to_uint64` (lowercase, zero-padded)."""
    return [f"{int(v):016x}" for v in np.asarray(hashes, dtype=np.uint64)]


def popcount64(x: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Set bits per element; the Hamming distance of ``a ^ b``."""
    return np.bitwise_count(np.asarray(x, dtype=np.uint64))


def _as_hashes(hashes: npt.ArrayLike, radius: int) -> U64:
    """Validate; int64 input is taken as the same 64-bit pattern."""
    if isinstance(hashes, np.ndarray):
        arr = hashes
    else:
        try:  # a plain list of ints >= 2**63 would otherwise become float64
            arr = np.array(hashes, dtype=np.uint64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise ValueError(f"hashes must be unsigned 64-bit integers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"hashes must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "ui":
        raise ValueError(f"hashes must be unsigned 64-bit integers, got dtype {arr.dtype}")
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    if arr.size >= _MAX_N:
        raise ValueError(f"at most {_MAX_N - 1} hashes are supported, got {arr.size}")
    return np.ascontiguousarray(arr.astype(np.uint64, copy=False))


def _iter_flat(counts: I64, batch: int) -> Iterator[tuple[I64, I64]]:
    """Walk ``sum(counts)`` items as (owner, local index) in batches of at most ``batch``."""
    if counts.size == 0:
        return
    ends = np.cumsum(counts)
    total = int(ends[-1])
    for lo in range(0, total, batch):
        hi = min(lo + batch, total)
        first = int(np.searchsorted(ends, lo, side="right"))
        last = int(np.searchsorted(ends, hi - 1, side="right"))
        span = counts[first : last + 1].copy()
        span[-1] = hi - (ends[last] - counts[last])  # items of `last` inside this batch
        span[0] -= lo - (ends[first] - counts[first])  # items of `first` before this batch
        owner = np.repeat(np.arange(first, last + 1, dtype=np.int64), span)
        flat = np.arange(lo, hi, dtype=np.int64)
        yield owner, flat - (ends[owner] - counts[owner])


def _iter_group_pairs(starts: I64, sizes: I64, batch: int) -> Iterator[tuple[I64, I64]]:
    """Positions (a, b), a < b, of every pair inside each run [start, start + size)."""
    two = starts[sizes == 2]  # the common case on random data: one pair, no arithmetic
    for lo in range(0, two.size, batch):
        yield two[lo : lo + batch], two[lo : lo + batch] + 1
    keep = sizes > 2
    starts, sizes = starts[keep], sizes[keep]
    npairs = sizes * (sizes - 1) // 2
    for owner, local in _iter_flat(npairs, batch):
        # local = b * (b - 1) / 2 + a with 0 <= a < b: invert the triangular number.
        b = ((1.0 + np.sqrt(1.0 + 8.0 * local.astype(np.float64))) * 0.5).astype(np.int64)
        b -= b * (b - 1) // 2 > local
        b += (b + 1) * b // 2 <= local
        a = local - b * (b - 1) // 2
        base = starts[owner]
        yield base + a, base + b


def _chunk_layout(m: int) -> tuple[list[int], list[int]]:
    """Offsets and widths of ``m`` contiguous chunks covering 64 bits (widths differ by <= 1)."""
    widths = [HASH_BITS // m + (1 if c < HASH_BITS % m else 0) for c in range(m)]
    offsets = [sum(widths[:c]) for c in range(m)]
    return offsets, widths


def _random_candidates(n: int, radius: int, m: int) -> float:
    """Expected candidate pairs over all key subsets if the hashes were uniformly random."""
    s = m - radius
    narrow, wide = HASH_BITS // m, HASH_BITS % m
    # Subsets holding t of the wide chunks have s * narrow + t key bits.
    collisions = sum(
        comb(wide, t) * comb(m - wide, s - t) * 2.0 ** -(s * narrow + t)
        for t in range(max(0, s - (m - wide)), min(s, wide) + 1)
    )
    return n * (n - 1) / 2 * collisions


def _subset_keys(chunk_vals: list[U64], widths: list[int], subset: Sequence[int]) -> U64:
    key = np.zeros(chunk_vals[0].size, dtype=np.uint64)
    shift = 0
    for c in subset:
        key |= chunk_vals[c] << np.uint64(shift)
        shift += widths[c]
    return key


def _chunk_values(values: U64, m: int) -> tuple[list[U64], list[int], list[int]]:
    offsets, widths = _chunk_layout(m)
    vals = [
        (values >> np.uint64(o)) & np.uint64((1 << w) - 1)
        for o, w in zip(offsets, widths, strict=True)
    ]
    return vals, offsets, widths


def _measured_candidates(values: U64, radius: int, m: int, samples: int) -> float:
    """Candidate pairs over all subsets, extrapolated from a few (seeded) sampled subsets.

    Clustered hashes (real images) collide far more than random ones, so the random model
    alone would pick too many subsets there.
    """
    chunk_vals, _, widths = _chunk_values(values, m)
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(samples):
        subset = np.sort(rng.choice(m, size=m - radius, replace=False)).tolist()
        keys = np.sort(_subset_keys(chunk_vals, widths, subset))
        _, sizes = _sparse_runs(keys[1:] == keys[:-1])
        total += float((sizes * (sizes - 1) // 2).sum())
    return total / samples * comb(m, radius)


def choose_chunks(values: U64, radius: int, *, samples: int = 4, tries: int = 3) -> int | None:
    """Chunk count with the lowest estimated time on these (distinct) hashes, None = brute force.

    Ranks chunk counts by the random-hash model, then measures candidate counts for the best
    few, because on clustered data the true near pairs dominate the candidates.
    """
    n = values.size
    brute = _COST_BRUTE * n * (n - 1) / 2
    ranked: list[tuple[float, int]] = []
    for m in range(radius + 1, HASH_BITS + 1):
        if comb(m, radius) > 100_000:
            break
        fixed = comb(m, radius) * (_COST_KEY * n + _COST_SUBSET)
        ranked.append((fixed + _COST_CANDIDATE * _random_candidates(n, radius, m), m))
    ranked.sort()
    best: tuple[float, int | None] = (brute, None)
    for model_cost, m in ranked[:tries]:
        if model_cost >= best[0]:
            break
        fixed = comb(m, radius) * (_COST_KEY * n + _COST_SUBSET)
        cost = fixed + _COST_CANDIDATE * _measured_candidates(values, radius, m, samples)
        if cost < best[0]:
            best = (cost, m)
    return best[1]


def _brute_pairs(values: U64, radius: int, block_elems: int = 1 << 18) -> Iterator[tuple[I64, ...]]:
    """(i, j, d) for i < j, d <= radius, by blocked upper-triangular popcount, in i-then-j order."""
    n = values.size
    rows = max(1, block_elems // max(n, 1))
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        width = n - lo  # block column c is index lo + c, row r is index lo + r
        dist = np.bitwise_count(values[lo:hi, None] ^ values[None, lo:])
        flat = np.flatnonzero(dist <= radius)  # 1-D nonzero is several times faster than 2-D
        r = flat // width
        c = flat - r * width
        keep = c > r
        if keep.any():
            r, c = r[keep], c[keep]
            yield r + lo, c + lo, dist[r, c].astype(np.int64)


def pairs_within_radius_bruteforce(hashes: npt.ArrayLike, radius: int) -> I64:
    """Reference answer by comparing every pair (blocked so memory stays bounded)."""
    values = _as_hashes(hashes, radius)
    parts = list(_brute_pairs(values, radius))
    if not parts:
        return _empty_pairs()
    return np.column_stack([np.concatenate(col) for col in zip(*parts, strict=True)])


def _sparse_runs(equal_next: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    """Runs of equal sorted keys with >= 2 members, from ``keys[1:] == keys[:-1]``.

    Works on the (usually few) equal neighbours only, instead of on all n positions.
    """
    pos = np.flatnonzero(equal_next)
    if pos.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    first = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1] + 1)))
    links = np.diff(np.append(first, pos.size))  # equal neighbours per run = size - 1
    return pos[first].astype(np.int64), (links + 1).astype(np.int64)


def _mih_pairs(values: U64, radius: int, m: int, batch: int) -> Iterator[tuple[I64, ...]]:
    """(i, j, d) of distinct-valued pairs within ``radius``, each exactly once, in no order."""
    n = values.size
    chunk_vals, offsets, widths = _chunk_values(values, m)
    in_place = [np.uint64(((1 << w) - 1) << o) for o, w in zip(offsets, widths, strict=True)]
    idx_bits = max(1, int(n - 1).bit_length())
    idx_mask = np.uint64((1 << idx_bits) - 1)
    ids = np.arange(n, dtype=np.uint64)
    for subset in combinations(range(m), m - radius):
        key = _subset_keys(chunk_vals, widths, subset)
        if sum(widths[c] for c in subset) + idx_bits <= HASH_BITS:
            # Sort (key, index) packed in one uint64: a plain sort beats argsort.
            key <<= np.uint64(idx_bits)
            key |= ids
            key.sort()
            order = key & idx_mask
            key >>= np.uint64(idx_bits)
        else:
            order = np.argsort(key, kind="stable").astype(np.uint64)
            key = key[order]
        starts, sizes = _sparse_runs(key[1:] == key[:-1])
        # Chunks that must disagree for this subset to be the pair's first agreeing subset.
        earlier = [in_place[c] for c in range(subset[-1]) if c not in subset]
        for pa, pb in _iter_group_pairs(starts, sizes, batch):
            i = order[pa]
            j = order[pb]
            x = values[i] ^ values[j]
            d = np.bitwise_count(x)
            sel = np.flatnonzero(d <= radius)
            if sel.size == 0:
                continue
            x = x[sel]
            first = np.ones(sel.size, dtype=bool)
            for chunk_mask in earlier:
                first &= (x & chunk_mask) != 0
            sel = sel[first]
            if sel.size:
                yield i[sel].astype(np.int64), j[sel].astype(np.int64), d[sel].astype(np.int64)


def pairs_within_radius(
    hashes: npt.ArrayLike,
    radius: int,
    *,
    chunks: int | None = None,
    batch_pairs: int = DEFAULT_BATCH_PAIRS,
) -> I64:
    """Every pair (i, j, distance), i < j, with Hamming distance <= radius, sorted by (i, j).

    ``chunks`` overrides the modelled choice of multi-index chunk count (must exceed
    ``radius``); ``batch_pairs`` bounds candidate pairs held in memory at once.
    """
    values = _as_hashes(hashes, radius)
    n = values.size
    if batch_pairs < 1:
        raise ValueError(f"batch_pairs must be positive, got {batch_pairs}")
    if chunks is not None and not radius < chunks <= HASH_BITS:
        raise ValueError(f"chunks must be in ({radius}, {HASH_BITS}], got {chunks}")
    if n < 2:
        return _empty_pairs()

    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    counts = counts.astype(np.int64)
    members = np.argsort(inverse, kind="stable").astype(np.int64)  # ascending within a value
    group_start = np.cumsum(counts) - counts
    n64 = np.int64(n)
    packed_parts: list[I64] = []

    # Equal hashes: every pair inside a group, distance 0.
    for pa, pb in _iter_group_pairs(group_start, counts, batch_pairs):
        packed_parts.append((members[pa] * n64 + members[pb]) << _D_BITS)

    # Distinct values within the radius, then every member pair of the two groups.
    if radius > 0 and uniq.size > 1:
        m = chunks if chunks is not None else choose_chunks(uniq, radius)
        if m is None:
            found = _brute_pairs(uniq, radius)
        else:
            found = _mih_pairs(uniq, radius, m, batch_pairs)
        for p, q, d in found:
            cross = counts[p] * counts[q]
            if cross.max(initial=0) <= 1:  # no equal hashes involved: one pair each
                i = members[group_start[p]]
                j = members[group_start[q]]
                lo, hi = np.minimum(i, j), np.maximum(i, j)
                packed_parts.append(((lo * n64 + hi) << _D_BITS) | d)
                continue
            for t, local in _iter_flat(cross, batch_pairs):
                qt = q[t]
                i = members[group_start[p[t]] + local // counts[qt]]
                j = members[group_start[qt] + local % counts[qt]]
                lo = np.minimum(i, j)
                hi = np.maximum(i, j)
                packed_parts.append(((lo * n64 + hi) << _D_BITS) | d[t])

    if not packed_parts:
        return _empty_pairs()
    packed = np.concatenate(packed_parts)
    del packed_parts
    packed.sort()
    out = np.empty((packed.size, 3), dtype=np.int64)
    # Decode in place (out=) so peak memory is the packed keys plus the result, no temporaries.
    np.bitwise_and(packed, (1 << _D_BITS) - 1, out=out[:, 2])
    packed >>= _D_BITS
    np.floor_divide(packed, n64, out=out[:, 0])
    np.remainder(packed, n64, out=out[:, 1])
    return out


def phash_distances(phashes: Sequence[str], a: npt.ArrayLike, b: npt.ArrayLike) -> I64:
    """Hamming distances between the long (e.g. 256-bit) hex hashes of items a[k] and b[k]."""
    if not len(phashes):
        return np.zeros(0, dtype=np.int64)
    words = np.array([np.frombuffer(bytes.fromhex(h), dtype=">u8") for h in phashes])
    x = words[np.asarray(a, dtype=np.int64)] ^ words[np.asarray(b, dtype=np.int64)]
    return np.bitwise_count(x).sum(axis=1).astype(np.int64)
