"""Shared fixtures. `ham10000` is the only way a test reaches the real data set."""

from __future__ import annotations

from pathlib import Path

import pytest

# The development copy beside the project (never copied into it); see its README.md.
HAM10000 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ham10000"


@pytest.fixture
def ham10000(request: pytest.FixtureRequest) -> Path:
    """The HAM10000 folder (metadata.csv + images/). Only for tests marked `slow`, which the
    default suite deselects; skips cleanly when the data is not on this machine."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads ../shared/data/ham10000: mark it slow")
    if not (HAM10000 / "metadata.csv").is_file() or not (HAM10000 / "images").is_dir():
        pytest.skip(f"HAM10000 not found at {HAM10000}")
    return HAM10000
