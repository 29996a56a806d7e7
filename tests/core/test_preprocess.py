"""`preprocess.fit`: scale to cover, then centre-crop; never squash.

Each source image marks, by hand, the box that a cover-and-centre-crop to 200x150 (4:3) keeps:
outside it a border colour, inside it four coloured quadrants meeting at the box centre. The
output must be exactly those four quadrants meeting at the output centre, with no border colour.
A squash would pull the border into the output; an off-centre crop would move the meeting point.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dermai.core.preprocess import fit

H, W = 150, 200  # the model's input (height x width)
BORDER = (255, 0, 255)
QUADRANTS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))  # TL, TR, BL, BR


def marked(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    """Border colour everywhere, four quadrants inside `box` (left, top, right, bottom)."""
    arr = np.empty((height, width, 3), dtype=np.uint8)
    arr[:] = BORDER
    left, top, right, bottom = box
    cx, cy = (left + right) // 2, (top + bottom) // 2
    arr[top:cy, left:cx] = QUADRANTS[0]
    arr[top:cy, cx:right] = QUADRANTS[1]
    arr[cy:bottom, left:cx] = QUADRANTS[2]
    arr[cy:bottom, cx:right] = QUADRANTS[3]
    return Image.fromarray(arr)


def expected_output() -> np.ndarray:
    arr = np.empty((H, W, 3), dtype=np.uint8)
    arr[: H // 2, : W // 2] = QUADRANTS[0]
    arr[: H // 2, W // 2 :] = QUADRANTS[1]
    arr[H // 2 :, : W // 2] = QUADRANTS[2]
    arr[H // 2 :, W // 2 :] = QUADRANTS[3]
    return arr


# Source sizes and the crop box in source pixels, worked out by hand for a 200x150 output:
#   1:1  240x240: the 4:3 box is the full width by 240*3/4 = 180 rows, (240-180)/2 = 30 from the top
#   3:4  240x320: full width by 180 rows, (320-180)/2 = 70 from the top
#   16:9 320x180: full height by 180*4/3 = 240 columns, (320-240)/2 = 40 from the left
CASES = {
    "1:1": ((240, 240), (0, 30, 240, 210)),
    "3:4": ((240, 320), (0, 70, 240, 250)),
    "16:9": ((320, 180), (40, 0, 280, 180)),
}


@pytest.mark.parametrize(("size", "box"), CASES.values(), ids=CASES.keys())
def test_fit_centre_crops_the_hand_computed_box(
    size: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    out = fit(marked(*size, box), H, W)
    assert out.size == (W, H)
    got = np.asarray(out).astype(int)
    want = expected_output().astype(int)
    # Resampling blurs a pixel or two at each colour edge; everywhere else it is exact.
    interior = np.ones((H, W), dtype=bool)
    for y in (0, H // 2, H):
        interior[max(0, y - 3) : y + 3, :] = False
    for x in (0, W // 2, W):
        interior[:, max(0, x - 3) : x + 3] = False
    assert np.abs(got - want)[interior].max() <= 2
    # Nothing of the border survives anywhere (bicubic overshoot near edges stays far from it).
    near_border = np.abs(got - np.array(BORDER)).sum(axis=-1) < 60
    assert not near_border.any(), f"border colour in {near_border.sum()} output pixels"


@pytest.mark.parametrize(("size", "box"), CASES.values(), ids=CASES.keys())
def test_fit_equals_cropping_the_box_then_resizing(
    size: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    """On a smooth image, fit() matches an explicit crop of the hand-computed box, then resize."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=-1)
    img = Image.fromarray(arr.astype(np.uint8))
    want = np.asarray(img.crop(box).resize((W, H), Image.BICUBIC)).astype(int)
    got = np.asarray(fit(img, H, W)).astype(int)
    assert np.abs(got - want).mean() < 1.5
    assert np.abs(got - want).max() <= 4


def test_fit_leaves_an_image_of_the_right_size_alone_and_only_scales_4_3() -> None:
    img = marked(W, H, (0, 0, W, H))
    assert fit(img, H, W) is img
    big = fit(marked(400, 300, (0, 0, 400, 300)), H, W)  # 4:3: nothing to crop
    assert big.size == (W, H)
    got = np.asarray(big).astype(int)
    assert np.abs(got[5:70, 5:95] - np.array(QUADRANTS[0])).max() <= 2
    assert np.abs(got[80:145, 105:195] - np.array(QUADRANTS[3])).max() <= 2
