"""Generate the deterministic synthetic sample dataset (a demo and test fixture, NOT real data).

Layout: <out>/<source>/<condition>/<age_group>/<file>. It includes exact copies, re-encoded and
resized near-duplicates and a few corrupt files, so every later stage has something to catch.
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from dermai import params as params_mod
from dermai.core.ages import age_labels
from dermai.core.synth import class_counts, lesion_image
from dermai.io.atomic import atomic_dir

log = logging.getLogger(__name__)

SOURCES = ["clinic_a", "clinic_b"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (section: sample)")
    p.add_argument("--out", required=True, help="output folder (replaced whole)")


def _jpeg(arr_or_img: np.ndarray | Image.Image, quality: int) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def generate(out: Path, seed: int, classes: list[str], age_edges: list[int], cfg) -> dict:
    """Write the sample into `out` (must not exist). Returns counts for the log."""
    rng = np.random.default_rng(seed)
    ages = age_labels(age_edges)
    counts = class_counts(cfg.n_images, classes)
    files: list[tuple[Path, bytes]] = []
    n = 0
    for condition in classes:
        for _ in range(counts[condition]):
            source = SOURCES[int(rng.integers(len(SOURCES)))]
            # Older patients more often for the malignant-looking classes, like real data.
            p_age = [0.1, 0.4, 0.5] if condition in ("mel", "bcc", "akiec") else [0.3, 0.45, 0.25]
            age = ages[int(rng.choice(len(ages), p=_fit(p_age, len(ages))))]
            arr = lesion_image(condition, rng, cfg.height, cfg.width)
            rel = Path(source, condition, age, f"syn_{n:04d}.jpg")
            files.append((rel, _jpeg(arr, 92)))
            n += 1

    base = list(files)
    picks = rng.choice(len(base), size=cfg.n_exact_copies + cfg.n_near_duplicates, replace=False)
    for k, idx in enumerate(picks[: cfg.n_exact_copies]):
        rel, data = base[int(idx)]
        other = SOURCES[(SOURCES.index(rel.parts[0]) + 1) % len(SOURCES)]
        files.append((Path(other, *rel.parts[1:-1], f"copy_{k:03d}.jpg"), data))
    for k, idx in enumerate(picks[cfg.n_exact_copies :]):
        rel, data = base[int(idx)]
        img = Image.open(io.BytesIO(data)).convert("RGB")
        kind = k % 3
        if kind == 0:  # re-encode at lower quality
            new = _jpeg(img, 70)
        elif kind == 1:  # resized copy
            size = (img.width * 3 // 4, img.height * 3 // 4)
            new = _jpeg(img.resize(size, Image.Resampling.LANCZOS), 90)
        else:  # 2% crop
            dx, dy = max(1, img.width // 50), max(1, img.height // 50)
            new = _jpeg(img.crop((dx, dy, img.width - dx, img.height - dy)), 90)
        files.append((rel.with_name(f"near_{k:03d}.jpg"), new))

    corrupt_kinds = [
        ("empty_000.jpg", b""),
        ("truncated_001.jpg", base[0][1][: len(base[0][1]) // 3]),
        ("notes_002.jpg", b"this is a text file, not an image\n"),
    ]
    for k in range(cfg.n_corrupt):
        name, data = corrupt_kinds[k % len(corrupt_kinds)]
        rel = base[k + 1][0]
        files.append((rel.with_name(f"bad{k}_{name}"), data))

    for rel, data in files:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {
        "images": len(base),
        "exact_copies": cfg.n_exact_copies,
        "near_duplicates": cfg.n_near_duplicates,
        "corrupt": cfg.n_corrupt,
        "files": len(files),
    }


def _fit(p: list[float], n: int) -> list[float]:
    q = (p + [p[-1]] * n)[:n]
    s = sum(q)
    return [x / s for x in q]


def run(args: argparse.Namespace) -> None:
    prm = params_mod.load(args.params)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        # Empty base.classes (classes taken from the data after index.class_map): HAM's seven.
        classes = prm.base.classes or params_mod.HAM_CLASSES
        stats = generate(tmp, prm.base.seed, classes, prm.base.age_edges, prm.sample)
    log.info("sample written to %s: %s (synthetic demo data, not real)", out, stats)
