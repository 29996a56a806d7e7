"""Test-time augmentation (TTA): which views of an image a prediction averages over.

`flips` (identity, left-right, up-down, both = a 180 degree turn) keeps any aspect ratio;
`dihedral` (the 8 turns and flips of a square) swaps height and width for the quarter turns,
so it is valid for square inputs only. A view is a left-right flip (or not) followed by
`turns` quarter turns; the identity view comes first, so runtimes that score the un-augmented
image (the OOD guard) take view 0. `apply` is the numpy definition of a view: the TF runtime
(`runtime.inference`) is tested against it. The averaging rule (mean of the softmax over the
views, then temperature scaling of its log) is in `runtime.inference.tta_outputs`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import numpy as np

from dermai.errors import DermaiError

Mode = Literal["none", "flips", "dihedral"]
MODES: tuple[str, ...] = get_args(Mode)


class View(NamedTuple):
    """Flip left-right first (when `flip`), then turn `turns` quarter turns counter-clockwise."""

    turns: int
    flip: bool


IDENTITY = View(0, False)
FLIPS = (IDENTITY, View(0, True), View(2, True), View(2, False))  # id, left-right, up-down, 180
DIHEDRAL = tuple(View(k, f) for f in (False, True) for k in range(4))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise DermaiError(f"unknown test-time augmentation {mode!r}: use one of {', '.join(MODES)}")
    return mode


def views(mode: str, height: int, width: int) -> tuple[View, ...]:
    """The views `mode` averages over for an input of height x width (identity first)."""
    check_mode(mode)
    if mode == "none":
        return (IDENTITY,)
    if mode == "flips":
        return FLIPS
    if height != width:
        raise DermaiError(
            f"tta=dihedral needs a square input (quarter turns swap height and width), the "
            f"model takes {height}x{width}: use tta=flips"
        )
    return DIHEDRAL


def apply(view: View, batch: np.ndarray) -> np.ndarray:
    """The view of an N x H x W x C batch (numpy; the definition the TF runtime matches)."""
    x = batch[:, :, ::-1] if view.flip else batch
    return np.rot90(x, view.turns, axes=(1, 2))
