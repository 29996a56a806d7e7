"""Synthetic dermoscopy-like images for the embedded sample dataset and tests.

Each condition gets its own lesion colour, shape and texture, so a small model can learn
something; nothing here resembles real pathology. Pure: returns arrays, never touches disk.
"""

from __future__ import annotations

import numpy as np

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
