"""Synthetic dermoscopy-like images for the embedded sample dataset and tests.

Each condition gets its own lesion colour, shape and texture, so a small model can learn
something; nothing here resembles real pathology. `sample_files` is the whole sample (with
injected copies, near-duplicates and corrupt files) as bytes. Pure: returns arrays and bytes,
never touches disk.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dermai.core.ages import age_labels

if TYPE_CHECKING:
    from dermai.params import SampleParams

SOURCES = ["clinic_a", "clinic_b"]

# condition -> (lesion RGB, irregularity, texture kind)
STYLES: dict[str, tuple[tuple[int, int, int], float, str]] = {
    "nv": ((120, 75, 45), 0.05, "smooth"),
    "mel": ((45, 25, 20), 0.35, "blotch"),
    "bkl": ((165, 120, 80), 0.15, "stripes"),
    "bcc": ((215, 150, 160), 0.20, "vessels"),
    "akiec": ((190, 80, 70), 0.25, "speckle"),
    "vasc": ((150, 30, 80), 0.10, "lobules"),
    "df": ((140, 95, 70), 0.05, "ring"),
}

CONFUSABLE = 0.25

# Shaped like HAM10000 (nv dominant, long tail) but with a floor so every class can be split.
SHARES: dict[str, float] = {
    "nv": 0.40,
    "mel": 0.15,
    "bkl": 0.15,
    "bcc": 0.10,
    "akiec": 0.08,
    "vasc": 0.06,
    "df": 0.06,
}


def class_counts(n: int, classes: list[str]) -> dict[str, int]:
    """Split n images across classes by SHARES (largest-remainder rounding, deterministic)."""
    shares = np.array([SHARES.get(c, 0.05) for c in classes], dtype=float)
    shares /= shares.sum()
    raw = shares * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(classes, counts.tolist(), strict=True))


def lesion_image(condition: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One HxWx3 uint8 image of a synthetic lesion of `condition` on skin."""
    colour, irregular, texture = STYLES.get(condition, ((100, 100, 100), 0.1, "smooth"))
    if rng.uniform() < CONFUSABLE:  # borrow another class's texture so the task is not trivial
        texture = STYLES[str(rng.choice(sorted(STYLES)))][2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    skin = np.array([225, 180, 150], dtype=np.float64) + rng.normal(0, 12, 3)
    img = np.broadcast_to(skin, (height, width, 3)).copy()
    img += rng.normal(0, 6, (height, width, 1))

    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    ry = height * rng.uniform(0.22, 0.34)
    rx = width * rng.uniform(0.22, 0.34)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + irregular * (
        np.sin(3 * angle + rng.uniform(0, 6.3)) * rng.uniform(0.3, 1)
        + np.sin(5 * angle + rng.uniform(0, 6.3)) * rng.uniform(0.2, 0.7)
    )
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) / wobble
    mask = np.clip(1.2 - r, 0, 1) / 0.2
    mask = np.clip(mask, 0, 1)[..., None]

    lesion = np.array(colour, dtype=np.float64) + rng.normal(0, 22, 3)
    tex: np.ndarray = np.zeros((height, width, 1))  # (h, w, 1) or (h, w, 3): broadcast below
    if texture == "blotch":
        tex = rng.normal(0, 1, (height // 8 + 1, width // 8 + 1))
        tex = np.kron(tex, np.ones((8, 8)))[:height, :width, None] * 30
    elif texture == "stripes":
        tex = (np.sin(xx / 2.5 + yy / 4.0) * 18)[..., None]
    elif texture == "vessels":
        lines = np.abs(np.sin(xx / 3 + np.sin(yy / 5) * 2)) < 0.15
        tex = np.where(lines, -70.0, 0.0)[..., None] * np.array([0.2, 1.0, 1.0])
    elif texture == "speckle":
        tex = rng.normal(0, 28, (height, width, 1))
    elif texture == "lobules":
        tex = (np.sin(xx / 4) * np.sin(yy / 4) * 30)[..., None]
    elif texture == "ring":
        tex = np.where(r < 0.45, 80.0, 0.0)[..., None]
    lesion_img = lesion + tex
    out = img * (1 - mask) + lesion_img * mask
    return np.clip(out, 0, 255).astype(np.uint8)


def _jpeg(arr_or_img: np.ndarray | Image.Image, quality: int) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def sample_files(
    seed: int, classes: list[str], age_edges: list[int], cfg: SampleParams
) -> list[tuple[PurePosixPath, bytes]]:
    """The sample's files, (relative path, bytes): `cfg.n_images` lesions spread over the
    classes and SOURCES with their ages, then exact copies (in the other source), re-encoded,
    resized and cropped near-duplicates, and corrupt files. Same seed, same bytes."""
    rng = np.random.default_rng(seed)
    ages = age_labels(age_edges)
    counts = class_counts(cfg.n_images, classes)
    files: list[tuple[PurePosixPath, bytes]] = []
    n = 0
    for condition in classes:
        for _ in range(counts[condition]):
            source = SOURCES[int(rng.integers(len(SOURCES)))]
            # Older patients more often for the malignant-looking classes, like real data.
            p_age = [0.1, 0.4, 0.5] if condition in ("mel", "bcc", "akiec") else [0.3, 0.45, 0.25]
            age = ages[int(rng.choice(len(ages), p=_fit(p_age, len(ages))))]
            arr = lesion_image(condition, rng, cfg.height, cfg.width)
            rel = PurePosixPath(source, condition, age, f"syn_{n:04d}.jpg")
            files.append((rel, _jpeg(arr, 92)))
            n += 1

    base = list(files)
    picks = rng.choice(len(base), size=cfg.n_exact_copies + cfg.n_near_duplicates, replace=False)
    for k, idx in enumerate(picks[: cfg.n_exact_copies]):
        rel, data = base[int(idx)]
        other = SOURCES[(SOURCES.index(rel.parts[0]) + 1) % len(SOURCES)]
        files.append((PurePosixPath(other, *rel.parts[1:-1], f"copy_{k:03d}.jpg"), data))
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

    return files


def _fit(p: list[float], n: int) -> list[float]:
    q = (p + [p[-1]] * n)[:n]
    s = sum(q)
    return [x / s for x in q]
