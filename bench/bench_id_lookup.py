"""Finding listed ids among the files of a large download: one walk, no stat per file.

    python bench/bench_id_lookup.py --n 100000

Builds a tree of empty files in a temp folder shaped like a preset download: `--n` ids listed in
a table, 10% of them with no file, 1% extra files nobody lists, spread over two part folders,
some with the `_downsampled` suffix. Times (1) a bare `os.walk` that only counts files, and
(2) the index's lookup: `io.images.walk_files` + `core.layouts.match` (every id and file accounted
for once). Prints both and the ratio lookup / walk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dermai.core import layouts
from dermai.io.images import walk_files


def build(root: Path, n: int) -> list[layouts.Task]:
    rows = []
    for k in range(n):
        image_id = f"ISIC_{k:07d}"
        rows.append(layouts.Task(path="", image_id=image_id, raw_label="nv", condition="nv"))
        if k % 10 == 9:
            continue  # listed, no file
        part = root / f"part_{1 + k % 2}"
        part.mkdir(exist_ok=True)
        suffix = "_downsampled" if k % 7 == 0 else ""
        (part / f"{image_id}{suffix}.jpg").touch()
    for k in range(n // 100):
        (root / "part_2" / f"EXTRA_{k:06d}.jpg").touch()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        rows = build(root, args.n)
        print(f"built {args.n} listed ids, tree in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        count = sum(len(files) for _, _, files in os.walk(root))
        t_walk = time.perf_counter() - t
        t = time.perf_counter()
        files = walk_files(root)
        tasks = layouts.match(rows, files, {".jpg"}, ["_downsampled"])
        t_lookup = time.perf_counter() - t
    ok = sum(not x.reject for x in tasks)
    no_file = sum(x.reject == "listed id has no image file" for x in tasks)
    no_label = sum(x.reject.startswith("image has no label") for x in tasks)
    assert ok + no_file == args.n and ok + no_label == count == len(files)
    print(f"files {count}: matched {ok}, listed without file {no_file}, unlisted files {no_label}")
    print(f"os.walk only : {t_walk:.2f} s")
    print(f"walk + match : {t_lookup:.2f} s")
    print(f"ratio lookup/walk: {t_lookup / t_walk:.2f}x")


if __name__ == "__main__":
    main()
