"""Hashing throughput (index + dedup) against plain Pillow full decode, on the same files.

    python bench/bench_hashing.py --raw ../shared/data/ham10000 --layout manifest

Runs, in one process tree and on the same files: (1) Pillow open + full decode of every image
on one core and on all cores, (2) `dermai index` (decode, EXIF, SHA1, dHash, pHash-256; all
cores), (3) `dermai dedup`. Prints images/s and the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image


def decode(path: str) -> int:
    with Image.open(path) as im:
        im.load()
        return im.width


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--layout", default="manifest", choices=["manifest", "folders"])
    args = ap.parse_args()
    raw = Path(args.raw)
    files = sorted(str(p) for p in raw.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    n = len(files)
    cores = os.cpu_count() or 1

    t = time.perf_counter()
    for f in files:
        decode(f)
    pil1 = n / (time.perf_counter() - t)
    with mp.get_context("fork").Pool(cores) as pool:
        t = time.perf_counter()
        pool.map(decode, files, chunksize=64)
        pil_n = n / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        prm = Path(tmp, "params.yaml")
        prm.write_text(yaml.safe_dump({"index": {"raw_root": str(raw), "layout": args.layout}}))
        exe = [sys.executable, "-m", "dermai.cli"]
        d = Path(tmp)
        t = time.perf_counter()
        subprocess.run(
            [
                *exe,
                "index",
                "--params",
                str(prm),
                "--out",
                f"{d}/index.csv",
                "--rejects",
                f"{d}/rejects.csv",
                "--summary",
                f"{d}/s.json",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        t_index = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(
            [
                *exe,
                "dedup",
                "--params",
                str(prm),
                "--index",
                f"{d}/index.csv",
                "--pairs",
                f"{d}/pairs.csv",
                "--groups",
                f"{d}/groups.csv",
                "--summary",
                f"{d}/ds.json",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        t_dedup = time.perf_counter() - t

    both = n / (t_index + t_dedup)
    print(f"{n} images, {cores} cores")
    print(f"Pillow full decode, 1 core      : {pil1:8.0f} img/s")
    print(f"Pillow full decode, {cores} cores     : {pil_n:8.0f} img/s")
    print(
        f"dermai index ({t_index:5.1f} s wall)    : {n / t_index:8.0f} img/s "
        f"(ratio to Pillow {cores} cores: {n / t_index / pil_n:.2f})"
    )
    print(f"dermai dedup ({t_dedup:5.1f} s wall)    : {n / t_dedup:8.0f} img/s")
    print(
        f"index + dedup                   : {both:8.0f} img/s "
        f"(ratio to Pillow {cores} cores: {both / pil_n:.2f})"
    )


if __name__ == "__main__":
    main()
