"""Age binning. Labels derive from the edges so params state the bins once."""

from __future__ import annotations

import math
from itertools import pairwise

UNKNOWN = "unknown"


def age_labels(edges: list[int]) -> list[str]:
    """Edges [30, 60] -> ["0-29", "30-59", "60+"] (filesystem-safe, sortable)."""
    if not edges or any(b <= a for a, b in pairwise(edges)) or edges[0] <= 0:
        raise ValueError(f"age edges must be positive and strictly increasing, got {edges}")
    labels = []
    lo = 0
    for hi in edges:
        labels.append(f"{lo}-{hi - 1}")
        lo = hi
    labels.append(f"{lo}+")
    return labels


def all_age_groups(edges: list[int]) -> list[str]:
    return [*age_labels(edges), UNKNOWN]


def bin_age(age: object, edges: list[int]) -> str:
    """Blank, non-numeric, NaN, zero or negative ages are `unknown` (HAM10000 uses 0 and blank)."""
    if age is None:
        return UNKNOWN
    if isinstance(age, str):
        age = age.strip()
        if not age:
            return UNKNOWN
        try:
            age = float(age)
        except ValueError:
            return UNKNOWN
    try:
        value = float(age)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return UNKNOWN
    if math.isnan(value) or value <= 0:
        return UNKNOWN
    labels = age_labels(edges)
    for edge, label in zip(edges, labels, strict=False):
        if value < edge:
            return label
    return labels[-1]
