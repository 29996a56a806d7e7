"""Shades-of-Grey colour constancy (`core.preprocess.shades_of_grey`).

Hand computations for grey world (p = 1) and max-RGB (p = inf) on a two-pixel image, a pure
Python brute-force oracle for any p, and properties: a per-channel colour cast is removed (the
output of a cast image is the output of the uncast one, up to one overall brightness factor that
is 1 for a cast that keeps the illuminant's norm), a grey image is unchanged, the output is
uint8 in [0, 255] and deterministic, and the corrected image's own illuminant is grey.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from dermai.core.preprocess import (
    NO_COLOUR_CONSTANCY,
    colour_p,
    fit,
    grey_gains,
    illuminant,
    prepare,
    shades_of_grey,
)

INF = math.inf
# Two pixels, (100, 50, 200) and (60, 150, 100).
TWO = np.array([[[100, 50, 200], [60, 150, 100]]], dtype=np.uint8)


def oracle(rgb: np.ndarray, p: float) -> np.ndarray:
    """Brute force, straight from the definitions: e_c = (sum x^p / n)^(1/p) (max for p =
    inf), gain_c = ||e|| / (sqrt(3) e_c), out = floor(x gain + 0.5) clipped."""
    h, w, _ = rgb.shape
    pixels = [[int(v) for v in rgb[y, x]] for y in range(h) for x in range(w)]
    e = []
    for c in range(3):
        vals = [px[c] for px in pixels]
        if p == INF:
            e.append(float(max(vals)))
        else:
            e.append((math.fsum(float(v) ** p for v in vals) / len(vals)) ** (1.0 / p))
    norm = math.sqrt(sum(v * v for v in e))
    gains = [norm / (math.sqrt(3.0) * v) if v > 0 else 1.0 for v in e]
    out = np.zeros_like(rgb)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                out[y, x, c] = min(255, max(0, math.floor(int(rgb[y, x, c]) * gains[c] + 0.5)))
    return out


def test_grey_world_p1_by_hand():
    # e = channel means = (80, 100, 150); ||e|| = sqrt(38900) = 197.231;
    # gains = 197.231 / (sqrt(3) e) = 113.871 / e = (1.42339, 1.13871, 0.75914)
    e = illuminant(TWO, 1)
    assert e.tolist() == [80.0, 100.0, 150.0]
    assert grey_gains(e) == pytest.approx([1.42339, 1.13871, 0.75914], abs=1e-5)
    # 100*1.42339 = 142.34, 50*1.13871 = 56.94, 200*0.75914 = 151.83
    # 60*1.42339 = 85.40, 150*1.13871 = 170.81, 100*0.75914 = 75.91
    assert shades_of_grey(TWO, 1).tolist() == [[[142, 57, 152], [85, 171, 76]]]


def test_max_rgb_p_inf_by_hand():
    # e = channel maxima = (100, 150, 200); ||e|| = sqrt(72500) = 269.258;
    # gains = 155.456 / e = (1.55456, 1.03638, 0.77728)
    e = illuminant(TWO, INF)
    assert e.tolist() == [100.0, 150.0, 200.0]
    assert grey_gains(e) == pytest.approx([1.55456, 1.03638, 0.77728], abs=1e-5)
    # 155.46, 51.82, 155.46 / 93.27, 155.46, 77.73
    assert shades_of_grey(TWO, INF).tolist() == [[[155, 52, 155], [93, 155, 78]]]


def test_p6_illuminant_by_hand():
    # red: ((100^6 + 60^6) / 2)^(1/6) = ((1e12 + 4.6656e10) / 2)^(1/6) = 89.7695
    assert illuminant(TWO, 6)[0] == pytest.approx(((100**6 + 60**6) / 2) ** (1 / 6), rel=1e-12)
    assert illuminant(TWO, 6)[0] == pytest.approx(89.7695, abs=1e-4)


images = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)),
    elements=st.integers(0, 255),
)
ps = st.one_of(st.sampled_from([1.0, 2.0, 6.0, 12.0, INF]), st.floats(1.0, 40.0))


@settings(max_examples=150, deadline=None)
@given(images, ps)
def test_matches_the_brute_force_oracle(rgb, p):
    got, want = shades_of_grey(rgb, p).astype(int), oracle(rgb, p).astype(int)
    # equal but for a value within 1e-12 of a .5 boundary (summation order differs)
    assert np.abs(got - want).max(initial=0) <= 1
    assert (got != want).mean() <= 0.05 or got.size < 20


@settings(max_examples=100, deadline=None)
@given(images, ps)
def test_uint8_same_shape_deterministic_input_untouched(rgb, p):
    before = rgb.copy()
    a, b = shades_of_grey(rgb, p), shades_of_grey(rgb, p)
    assert a.dtype == np.uint8 and a.shape == rgb.shape
    assert a.min(initial=0) >= 0 and a.max(initial=0) <= 255
    assert np.array_equal(a, b) and np.array_equal(rgb, before)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 255)
    ),
    ps,
)
def test_a_grey_image_is_unchanged(grey, p):
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    assert np.array_equal(shades_of_grey(rgb, p), rgb)


@settings(max_examples=100, deadline=None)
@given(images, ps)
def test_power_mean_grows_with_p_from_the_mean_to_the_max(rgb, p):
    x = rgb.reshape(-1, 3).astype(float)
    e1, ep, einf = illuminant(rgb, 1), illuminant(rgb, p), illuminant(rgb, INF)
    assert np.allclose(e1, x.mean(axis=0)) and np.array_equal(einf, x.max(axis=0))
    assert np.all(e1 <= ep + 1e-9) and np.all(ep <= einf + 1e-9)


def _cast(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(rgb * gains + 0.5), 0, 255).astype(np.uint8)


# Lesion-like images: smooth, colourful, nothing near 0 or 255 (so neither the cast nor the
# correction clips), 12 x 16 pixels: rounding one pixel moves the illuminant very little.
lesions = st.builds(
    lambda base, tint, seed: np.clip(
        base * tint + np.random.default_rng(seed).normal(0, 12, (12, 16, 3)), 40, 150
    ).astype(np.uint8),
    st.floats(70, 120),
    hnp.arrays(np.float64, 3, elements=st.floats(0.7, 1.2)),
    st.integers(0, 2**16),
)
casts = hnp.arrays(np.float64, 3, elements=st.floats(0.6, 1.5))


@settings(max_examples=100, deadline=None)
@given(lesions, casts, st.sampled_from([1.0, 6.0, INF]))
def test_a_colour_cast_that_keeps_the_illuminant_norm_is_removed(rgb, gains, p):
    # Scale the cast so it only tints: the illuminant keeps its norm, so the output is the
    # uncast image's output up to rounding (of the cast pixels and of the output).
    e = illuminant(rgb, p)
    gains = gains * np.linalg.norm(e) / np.linalg.norm(gains * e)
    assume(np.all(gains * rgb <= 250))
    out, cast_out = shades_of_grey(rgb, p).astype(int), shades_of_grey(_cast(rgb, gains), p)
    assume(out.max() <= 250)
    assert np.abs(cast_out.astype(int) - out).max() <= 2


@settings(max_examples=100, deadline=None)
@given(lesions, casts, st.sampled_from([1.0, 6.0, INF]))
def test_any_colour_cast_is_removed_up_to_one_brightness_factor(rgb, gains, p):
    # The chromatic part of any per-channel cast goes; what stays is one overall factor,
    # ||gains * e|| / ||e|| (the method keeps brightness), the same for every channel.
    cast = _cast(rgb, gains)
    s = np.linalg.norm(illuminant(cast, p)) / np.linalg.norm(illuminant(rgb, p))
    want = rgb * grey_gains(illuminant(rgb, p)) * s
    assume(want.max() <= 250 and np.all(gains * rgb <= 250))
    assert np.abs(shades_of_grey(cast, p).astype(float) - want).max() <= 2.5


@settings(max_examples=60, deadline=None)
@given(lesions, st.sampled_from([1.0, 6.0, INF]))
def test_the_corrected_image_has_a_grey_illuminant(rgb, p):
    out = shades_of_grey(rgb, p)
    assume(out.max() < 255)
    e = illuminant(out, p)
    assert e.max() - e.min() <= 1.0


def test_a_missing_channel_and_a_black_image_stay_finite():
    rg = TWO.copy()
    rg[..., 2] = 0
    out = shades_of_grey(rg, 6)
    assert out[..., 2].max() == 0 and out.dtype == np.uint8
    black = np.zeros((3, 4, 3), np.uint8)
    assert np.array_equal(shades_of_grey(black, 6), black)


def test_colour_p_reads_the_setting_and_refuses_bad_values():
    assert colour_p(NO_COLOUR_CONSTANCY) is None and colour_p(None) is None
    assert colour_p(6) == 6.0 and colour_p(1.0) == 1.0 and colour_p(INF) == INF
    for bad in (0.5, 0, -1, True, "six", math.nan, [6]):
        with pytest.raises(ValueError):
            colour_p(bad)


def test_prepare_is_fit_when_off_and_fit_then_shades_of_grey_when_on():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(30, 200, (61, 83, 3), dtype=np.uint8))
    fitted = np.asarray(fit(img, 15, 20))
    assert np.array_equal(np.asarray(prepare(img, 15, 20)), fitted)
    assert np.array_equal(np.asarray(prepare(img, 15, 20, NO_COLOUR_CONSTANCY)), fitted)
    on = prepare(img, 15, 20, 6.0)
    assert on.mode == "RGB" and on.size == (20, 15)
    assert np.array_equal(np.asarray(on), shades_of_grey(fitted, 6.0))
    right_size = Image.fromarray(fitted)
    assert prepare(right_size, 15, 20) is right_size  # off: fit's own result, untouched
