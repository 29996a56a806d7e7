"""Time the near-duplicate dHash search against brute force and imagededup, in one run.

Peers, all on the same 64-bit hashes and the same radius:
  ours        dermai.core.neardup.pairs_within_radius (multi-index hashing, numpy)
  brute       dermai.core.neardup.pairs_within_radius_bruteforce (blocked numpy popcount, all pairs)
  imagededup  imagededup's own search, as `DHash().find_duplicates(encoding_map={id: hex},
              max_distance_threshold=radius, search_method=...)` with its BK-tree ('bktree')
              and/or its Cython brute force ('brute_force_cython'); both run its multiprocessing
              pool with one worker per core, as imagededup does by default.

imagededup imports torch, torchvision (for its CNN method only) and matplotlib (for plotting)
at package import. None is needed for hash search, so this script installs stand-in modules
for them in sys.modules before importing imagededup (install imagededup with
`pip install --no-deps imagededup`; it then needs only numpy, scipy, scikit-learn, PyWavelets,
Pillow and tqdm). The search code that runs is imagededup's, unchanged.

imagededup is O(n²) at radius 8 (its BK-tree visits almost every node), so at 100k hashes it
would run for hours. Each method is timed on planted sets of the size given in `--imagededup`
and of half that size, the exponent of n is fitted from the two (capped at 2: n queries of at
most O(n) each), and its time at the full n is EXTRAPOLATED and labelled as such. Pair sets
are compared exactly: ours == brute on the full set, ours == imagededup on each subsample.

Each measurement runs in a fresh spawned process, so its peak RSS is its own. Usage:

    python bench/bench_neardup.py --n 100000 --radius 8 --seed 0
    python bench/bench_neardup.py --hashes-from data/index/index.csv --radius 8
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import resource
import sys
import time
import types
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from dermai.core.neardup import (
    choose_chunks,
    hex_to_uint64,
    pairs_within_radius,
    pairs_within_radius_bruteforce,
    uint64_to_hex,
)

STUBBED = [
    "torch",
    "torch.nn",
    "torch.utils",
    "torch.utils.data",
    "torchvision",
    "torchvision.models",
    "torchvision.models.vision_transformer",
    "torchvision.transforms",
    "matplotlib",
    "matplotlib.figure",
    "matplotlib.gridspec",
    "matplotlib.pyplot",
]


# --- data ---------------------------------------------------------------------------------


def planted_hashes(n: int, radius: int, seed: int, frac: float) -> np.ndarray:
    """Random hashes where `frac` of them are copies of another with 0..radius bits flipped.

    Random 64-bit hashes alone have almost no pairs within radius 8; the copies give real output.
    """
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    k = int(n * frac)
    if k == 0 or n < 2:
        return h
    perm = rng.permutation(n)
    copies, originals = perm[:k], perm[k:]
    sources = originals[rng.integers(0, originals.size, size=k)]
    bits = rng.random((k, 64)).argsort(axis=1)[:, :radius].astype(np.uint64)  # distinct bits
    flips = rng.integers(0, radius + 1, size=k)
    mask = np.zeros(k, dtype=np.uint64)
    for t in range(radius):
        mask |= np.where(flips > t, np.uint64(1) << bits[:, t], np.uint64(0))
    h[copies] = h[sources] ^ mask
    return h


def csv_hashes(path: str, n: int | None) -> np.ndarray:
    with open(path, newline="") as f:
        rows = [row["dhash"] for row in csv.DictReader(f)]
    return hex_to_uint64(rows[:n] if n else rows)


# --- measured jobs (each in its own spawned process) ---------------------------------------


def _stub_heavy_modules() -> None:
    """Stand-ins for torch/torchvision/matplotlib so imagededup imports without them."""

    class _Meta(type):
        def __getattr__(cls, attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return cls

    class _Stub(metaclass=_Meta):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
            return self

        def __getattr__(self, attr: str) -> Any:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Stub

    def module_getattr(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub

    for name in STUBBED:
        if name in sys.modules:
            continue
        mod = types.ModuleType(name, "bench stand-in: not needed for hash search")
        mod.__getattr__ = module_getattr  # type: ignore[method-assign]
        sys.modules[name] = mod
    for name in STUBBED:
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, sys.modules[name])


def _imagededup_pairs(hashes: np.ndarray, radius: int, method: str) -> np.ndarray:
    _stub_heavy_modules()
    import logging
    import multiprocessing

    # imagededup's pool must fork (its Linux default) so workers inherit the stand-ins; this
    # process was spawned, which would otherwise make its pool spawn too.
    multiprocessing.set_start_method("fork", force=True)
    warnings.filterwarnings("ignore", message="Parameter num_enc_workers has no effect")

    from imagededup.methods import DHash

    logging.getLogger("imagededup").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    mapping = {f"{i:07d}": h for i, h in enumerate(uint64_to_hex(hashes))}
    result = DHash(verbose=False).find_duplicates(
        encoding_map=mapping, max_distance_threshold=radius, scores=True, search_method=method
    )
    found = {
        (min(int(a), int(b)), max(int(a), int(b)), int(d))
        for a, dups in result.items()
        for b, d in dups
    }
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 3)


def _run(job: str, hashes: np.ndarray, radius: int, repeat: int) -> dict[str, Any]:
    fn: Callable[[], np.ndarray]
    if job == "ours":
        fn = lambda: pairs_within_radius(hashes, radius)  # noqa: E731
    elif job == "brute":
        fn = lambda: pairs_within_radius_bruteforce(hashes, radius)  # noqa: E731
    else:
        method = job.removeprefix("imagededup:")
        fn = lambda: _imagededup_pairs(hashes, radius, method)  # noqa: E731
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pairs = fn()
        times.append(time.perf_counter() - t0)
    return {
        "time": min(times),
        "pairs": pairs,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure(job: str, hashes: np.ndarray, radius: int, repeat: int = 1) -> dict[str, Any]:
    print(f"  running {job} on n={hashes.size} ...", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_run, job, hashes, radius, repeat).result()


# --- report -------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    n: int
    seconds: float
    ours_seconds: float  # ours on the same hashes, for the ratio column
    pairs: int | None
    rss_mb: float | None
    note: str = ""


def same(a: np.ndarray, b: np.ndarray) -> str:
    if np.array_equal(a, b):
        return f"identical ({len(a)} pairs, same distances)"
    sa, sb = {tuple(r) for r in a.tolist()}, {tuple(r) for r in b.tolist()}
    return f"DIFFERENT: {len(sa - sb)} only in first, {len(sb - sa)} only in second"


def human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3f} s"


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'method':<58} {'n':>7} {'time s':>11} {'pairs':>7} {'peak RSS MB':>11} "
        f"{'/ ours same n':>13}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        pairs = "-" if r.pairs is None else str(r.pairs)
        rss = "-" if r.rss_mb is None else f"{r.rss_mb:.0f}"
        print(
            f"{r.name:<58} {r.n:>7} {r.seconds:>11.3f} {pairs:>7} {rss:>11} "
            f"{r.seconds / r.ours_seconds:>12.1f}x{'  ' + r.note if r.note else ''}"
        )


def parse_imagededup(spec: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, spec.split(",")):
        method, _, size = item.partition(":")
        out.append((method, int(size or 4000)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="hashes (default 100000; CSV: all rows)")
    p.add_argument("--radius", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plant-frac", type=float, default=0.05, help="fraction of near copies")
    p.add_argument("--hashes-from", metavar="CSV", help="read the `dhash` column of this CSV")
    p.add_argument("--repeat", type=int, default=3, help="best of N for ours and brute")
    p.add_argument(
        "--imagededup",
        default="bktree:4000,brute_force_cython:10000",
        help="imagededup search methods and subsample sizes, METHOD:N,...; empty to skip",
    )
    args = p.parse_args()
    radius = args.radius

    if args.hashes_from:
        hashes = csv_hashes(args.hashes_from, args.n)
        source = f"dhash column of {args.hashes_from}"
        pick = np.random.default_rng(args.seed).permutation(hashes.size)

        def subset(size: int) -> np.ndarray:
            return hashes[np.sort(pick[:size])]
    else:
        hashes = planted_hashes(args.n or 100_000, radius, args.seed, args.plant_frac)
        source = f"random 64-bit, {args.plant_frac:.0%} planted copies with 0..{radius} flips"

        def subset(size: int) -> np.ndarray:  # same recipe, so as many pairs per hash
            return planted_hashes(size, radius, args.seed, args.plant_frac)

    n = hashes.size
    uniq = np.unique(hashes)
    m = choose_chunks(uniq, radius) if radius > 0 and uniq.size > 1 else None
    plan = f"multi-index, {m} chunks" if m else "brute force on distinct hashes"

    import imagededup  # only for its version; the search itself runs in child processes

    print("near-duplicate dHash search benchmark")
    print(f"  hashes : n={n} ({uniq.size} distinct), {source}, seed={args.seed}")
    print(f"  radius : {radius}   ours chose: {plan}")
    print(
        f"  machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy "
        f"{np.__version__}, imagededup {imagededup.__version__}"
    )
    print(
        "  notes  : torch/torchvision/matplotlib are stubbed in sys.modules for imagededup (only "
        "its CNN\n           and plotting use them); ours and brute are best of "
        f"{args.repeat}; every method runs in a fresh process"
    )
    print()

    ours = measure("ours", hashes, radius, args.repeat)
    brute = measure("brute", hashes, radius, args.repeat)
    rows = [
        Row(f"ours ({plan})", n, ours["time"], ours["time"], len(ours["pairs"]), ours["rss_mb"]),
        Row(
            "brute force, blocked numpy popcount",
            n,
            brute["time"],
            ours["time"],
            len(brute["pairs"]),
            brute["rss_mb"],
        ),
    ]
    checks = [f"ours vs brute (n={n}): {same(ours['pairs'], brute['pairs'])}"]
    ratios = [f"brute / ours at n={n}: {brute['time'] / ours['time']:.1f}x"]

    ours_cache: dict[int, dict[str, Any]] = {n: ours}
    for method, size in parse_imagededup(args.imagededup):
        size = min(size, n)
        measured = []
        for k in (size // 2, size):
            sub = subset(k) if k < n else hashes
            if k not in ours_cache:
                ours_cache[k] = measure("ours", sub, radius, args.repeat)
                res = ours_cache[k]
                rows.append(
                    Row(
                        "ours, on the imagededup subsample",
                        k,
                        res["time"],
                        res["time"],
                        len(res["pairs"]),
                        res["rss_mb"],
                    )
                )
            res = measure(f"imagededup:{method}", sub, radius)
            rows.append(
                Row(
                    f"imagededup {method} (measured)",
                    k,
                    res["time"],
                    ours_cache[k]["time"],
                    len(res["pairs"]),
                    res["rss_mb"] + res["child_rss_mb"],
                    "RSS: + largest worker",
                )
            )
            checks.append(
                f"ours vs imagededup {method} (n={k}): {same(ours_cache[k]['pairs'], res['pairs'])}"
            )
            measured.append(res["time"])
        ratios.append(
            f"imagededup {method} / ours at n={size} (measured): "
            f"{measured[1] / ours_cache[size]['time']:.0f}x"
        )
        if size < n:
            # Fitted exponent, capped at 2: n queries, each at most O(n) (noise can fit above).
            expo = min(2.0, math.log(measured[1] / measured[0]) / math.log(size / (size // 2)))
            full = measured[1] * (n / size) ** expo
            rows.append(
                Row(
                    f"imagededup {method} EXTRAPOLATED, t ~ n^{expo:.2f}",
                    n,
                    full,
                    ours["time"],
                    None,
                    None,
                    f"NOT RUN: ~{human(full)}, from the two measured sizes",
                )
            )
            ratios.append(
                f"imagededup {method} / ours at n={n} (EXTRAPOLATED, t ~ n^{expo:.2f}): "
                f"{full / ours['time']:.0f}x  (~{human(full)} vs {human(ours['time'])})"
            )

    print_table(rows)
    print()
    print("pair-set checks:")
    for c in checks:
        print("  " + c)
    print()
    print("ratios:")
    for r in ratios:
        print("  " + r)
    print()
    verdict = "met" if ours["time"] < 30 else "MISSED"
    print(
        f"target ours < 30 s (n=100000, radius 8): ours took {human(ours['time'])} at n={n}: "
        f"{verdict}"
    )


if __name__ == "__main__":
    main()
