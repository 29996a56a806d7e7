"""`dermai --help` start-up time against a bare interpreter, in the same script.

    python bench/bench_cli_help.py [--repeat 7]

Runs `python -c pass`, `python -m dermai.cli --help` and `python -m dermai.cli train --help`
(which imports the train command only) alternately, takes the median wall time of each, and
prints the ratios to `python -c pass`. Target: `dermai --help` under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def wall(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    t = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    runs = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dermai --help": [sys.executable, "-m", "dermai.cli", "--help"],
        "dermai train --help": [sys.executable, "-m", "dermai.cli", "train", "--help"],
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeat):  # interleaved, so machine load hits every command alike
        for name, argv in runs.items():
            times[name].append(wall(argv))
    base = statistics.median(times["python -c pass"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:22s} median {med:6.3f} s  ratio to python -c pass {med / base:5.2f}")


if __name__ == "__main__":
    main()
