"""Generate the deterministic synthetic sample dataset (a demo and test fixture, NOT real data).

Layout: <out>/<source>/<condition>/<age_group>/<file>. It includes exact copies, re-encoded and
resized near-duplicates and a few corrupt files, so every later stage has something to catch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dermai import params as params_mod
from dermai.core.synth import sample_files
from dermai.io.atomic import atomic_dir

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (section: sample)")
    p.add_argument("--out", required=True, help="output folder (replaced whole)")


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    out = Path(args.out)
    # Empty base.classes (classes taken from the data after index.class_map): HAM's seven.
    classes = prm.base.classes or params_mod.HAM_CLASSES
    files = sample_files(prm.base.seed, classes, prm.base.age_edges, prm.sample)
    with atomic_dir(out) as tmp:
        for rel, data in files:
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    cfg = prm.sample
    stats = {
        "images": len(files) - cfg.n_exact_copies - cfg.n_near_duplicates - cfg.n_corrupt,
        "exact_copies": cfg.n_exact_copies,
        "near_duplicates": cfg.n_near_duplicates,
        "corrupt": cfg.n_corrupt,
        "files": len(files),
    }
    log.info("sample written to %s: %s (synthetic demo data, not real)", out, stats)
