"""Time `dermai validate` on synthetic valid datasets, and the Great Expectations import.

Each measurement is a fresh process (the CLI as DVC runs it), so GX import is included; the GX
import alone is timed separately. Usage:

    python bench/validate_speed.py --sizes 300 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    "image_id",
    "path",
    "condition",
    "age_group",
    "source",
    "group_id",
    "sha1",
    "dhash",
    "width",
    "height",
    "format",
    "bytes",
]
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def write_dataset(root: Path, n: int) -> None:
    """Valid for default params: i % 10 == 9 -> test, == 8 -> val; one duplicate pair per 50."""
    ids = [f"img{i:06d}" for i in range(n)]
    index = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"images/{i}.jpg" for i in ids],
            "condition": [CLASSES[i % 7] for i in range(n)],
            "age_group": [["0-29", "30-59", "60+", "unknown"][i % 4] for i in range(n)],
            "source": "synthetic",
            "group_id": "",
            "sha1": [hashlib.sha1(i.encode()).hexdigest() for i in ids],
            "dhash": [hashlib.md5(i.encode()).hexdigest()[:16] for i in ids],
            "width": "600",
            "height": "450",
            "format": "JPEG",
            "bytes": "123456",
        },
        columns=COLUMNS,
    )
    groups = pd.DataFrame({"image_id": ids, "leakage_group": [f"G{i}" for i in ids]})
    pairs = [(i, i + 1) for i in range(0, n - 1, 50)]  # i % 10 == 0, 1: both train
    for a, b in pairs:
        index.loc[b, "sha1"] = index.loc[a, "sha1"]
        groups.loc[b, "leakage_group"] = groups.loc[a, "leakage_group"]
    duplicates = pd.DataFrame(
        {
            "a": [ids[a] for a, _ in pairs],
            "b": [ids[b] for _, b in pairs],
            "kind": "exact",
            "distance": 0,
        }
    )
    full = index.merge(groups, on="image_id")
    split = pd.Series(
        ["test" if i % 10 == 9 else "val" if i % 10 == 8 else "train" for i in range(n)]
    )
    (root / "splits").mkdir(parents=True)
    index.to_csv(root / "index.csv", index=False)
    groups.to_csv(root / "groups.csv", index=False)
    duplicates.to_csv(root / "duplicates.csv", index=False)
    for s in ("train", "val", "test"):
        full[split == s].to_csv(root / "splits" / f"{s}.csv", index=False)
    (root / "params.yaml").write_text("{}\n")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GX_ANALYTICS_ENABLED": "False"}
    imp = [
        timed([sys.executable, "-c", "import great_expectations"], env) for _ in range(args.repeat)
    ]
    base = [timed([sys.executable, "-c", "import pandas"], env) for _ in range(args.repeat)]
    print(
        f"python+pandas startup: {statistics.median(base):.2f}s; "
        f"+ import great_expectations: {statistics.median(imp):.2f}s (median of {args.repeat})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            root = Path(tmp) / str(n)
            write_dataset(root, n)
            for docs in (True, False):
                cmd = [
                    sys.executable,
                    "-m",
                    "dermai.cli",
                    "validate",
                    "--params",
                    str(root / "params.yaml"),
                    "--index",
                    str(root / "index.csv"),
                    "--groups",
                    str(root / "groups.csv"),
                    "--duplicates",
                    str(root / "duplicates.csv"),
                    "--splits",
                    str(root / "splits"),
                    "--expectations",
                    str(ROOT / "expectations"),
                    "--out",
                    str(root / "out"),
                ]
                if not docs:
                    cmd.append("--no-docs")
                times = [timed(cmd, env) for _ in range(args.repeat)]
                print(
                    f"dermai validate n={n:>6} docs={'on ' if docs else 'off'}: "
                    f"median {statistics.median(times):.2f}s "
                    f"(min {min(times):.2f}s, max {max(times):.2f}s)"
                )


if __name__ == "__main__":
    main()
