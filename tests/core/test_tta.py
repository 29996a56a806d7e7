"""The TTA view sets are groups under composition; dihedral needs a square input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dermai.core import tta
from dermai.errors import DermaiError


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A batch of one image with no symmetry at all (distinct random values)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(h * w * 2).reshape(1, h, w, 2).astype(np.float32)


def _results(views: tuple[tta.View, ...], x: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(tta.apply(v, x)).tobytes() for v in views}


@pytest.mark.parametrize(("mode", "h", "w"), [("flips", 5, 7), ("flips", 6, 6), ("dihedral", 6, 6)])
def test_views_are_a_group_that_starts_with_the_identity(mode, h, w):
    views = tta.views(mode, h, w)
    x = _image(h, w)
    assert views[0] == tta.IDENTITY and np.array_equal(tta.apply(views[0], x), x)
    results = _results(views, x)
    assert len(results) == len(views)  # distinct views of an asymmetric image
    for a in views:  # closed: a view of a view is a view, and each a gives the whole set back
        assert _results(views, np.ascontiguousarray(tta.apply(a, x))) == results


def test_flips_are_identity_left_right_up_down_and_the_half_turn():
    x = _image(4, 9)
    got = [tta.apply(v, x) for v in tta.views("flips", 4, 9)]
    want = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    for g, e in zip(got, want, strict=True):
        assert g.shape == x.shape and np.array_equal(g, e)


@given(st.integers(1, 6), st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_dihedral_has_eight_distinct_views_of_an_asymmetric_square(n, seed):
    x = _image(n + 1, n + 1, seed)  # n+1 >= 2: a 1x1 image is symmetric
    assert len(_results(tta.views("dihedral", n + 1, n + 1), x)) == 8


def test_none_is_the_identity_only():
    assert tta.views("none", 3, 5) == (tta.IDENTITY,)


def test_dihedral_of_a_non_square_input_is_a_one_line_error():
    with pytest.raises(DermaiError, match="square") as exc:
        tta.views("dihedral", 24, 32)
    assert "\n" not in str(exc.value)


def test_unknown_mode_is_a_one_line_error():
    with pytest.raises(DermaiError, match="unknown test-time augmentation") as exc:
        tta.views("rot45", 8, 8)
    assert "\n" not in str(exc.value)
