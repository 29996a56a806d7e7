"""core.metadata: the encoder's vector against a brute-force oracle, its JSON round trip, the
unknown path, and `mask` (each field set to unknown with the given probability)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dermai.core import metadata

RAW = st.sampled_from(
    ["", " ", "female", "FEMALE ", "male", "unknown", "UNK", "nan", "back", "Face", "?", "x"]
)
AGES = st.one_of(
    st.sampled_from(["", "n/a", "abc", "-3", "131", "inf", "nan", " 45 ", "0", "130"]),
    st.integers(-5, 140).map(str),
    st.floats(-10, 150, allow_nan=False).map(str),
)


def oracle(fields, vocab, answers) -> list[float]:
    """The documented rule, written out plainly (to_dict's `encoding`)."""
    out: list[float] = []
    for f in fields:
        raw = answers.get(f)
        text = "" if raw is None else str(raw).strip().lower()
        if f == "age":
            plain = text.lstrip("+-").replace(".", "", 1).replace("e", "", 1).replace("-", "", 1)
            try:
                years = float(text) if plain.replace("+", "", 1).isdigit() else float("nan")
            except ValueError:
                years = float("nan")
            ok = np.isfinite(years) and 0 <= years <= 130
            out += [years / 100.0, 1.0] if ok else [0.0, 0.0]
        else:
            values = vocab[f]
            one = [0.0] * (len(values) + 1)
            one[values.index(text) if text in values else len(values)] = 1.0
            out += one
    return out


@given(
    train_sex=st.lists(RAW, max_size=8),
    train_site=st.lists(RAW, max_size=8),
    sex=st.one_of(st.none(), RAW),
    site=st.one_of(st.none(), RAW),
    age=st.one_of(st.none(), AGES),
)
def test_encode_matches_the_oracle(train_sex, train_site, sex, site, age) -> None:
    n = min(len(train_sex), len(train_site))
    cols = {"age": ["1"] * n, "sex": train_sex[:n], "site": train_site[:n]}
    enc = metadata.fit(["age", "sex", "site"], cols)
    # the vocabulary: the training values, normalised, sorted, placeholders dropped
    for f in ("sex", "site"):
        expected = sorted({v.strip().lower() for v in cols[f]} - set(metadata.UNKNOWN_VALUES))
        assert list(enc.vocab[f]) == expected
    answers = {k: v for k, v in {"age": age, "sex": sex, "site": site}.items() if v is not None}
    got = enc.encode(answers)
    assert got.dtype == np.float32 and got.shape == (enc.width,)
    # the vector is float32 (the model's input dtype): the oracle's float64 values rounded to it,
    # so an age whose years / 100 underflows float32 (e.g. 1e-308) is 0 in both
    want = np.asarray(oracle(enc.fields, enc.vocab, answers), dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert metadata.Encoder.from_dict(enc.to_dict()) == enc


def test_unknown_is_what_no_answer_gives() -> None:
    enc = metadata.fit(["sex", "age"], {"sex": ["f", "m", ""], "age": ["3", "", "50"]})
    assert enc.slices() == [("sex", 0, 3), ("age", 3, 5)]
    np.testing.assert_array_equal(enc.unknown(), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(enc.encode({"sex": "other", "age": "200"}), enc.unknown())
    np.testing.assert_array_equal(enc.encode({"sex": " M ", "age": 50}), [0, 1, 0, 0.5, 1])
    assert enc.known("sex", "M") and not enc.known("sex", "other") and not enc.known("age", "")


def test_a_field_missing_from_the_data_is_an_error() -> None:
    with pytest.raises(ValueError, match="site"):
        metadata.fit(["site"], {"sex": ["f"]})


def test_from_dict_refuses_a_width_that_does_not_fit() -> None:
    doc = metadata.fit(["sex"], {"sex": ["f", "m"]}).to_dict()
    with pytest.raises(ValueError, match="width"):
        metadata.Encoder.from_dict({**doc, "width": 7})


@given(st.floats(0, 1), st.integers(0, 2**31))
def test_mask_hides_whole_fields_with_the_given_probability(p, seed) -> None:
    enc = metadata.fit(["age", "site"], {"age": ["40"] * 3, "site": ["a", "b", "c"]})
    m = np.stack([enc.encode({"age": 40, "site": "abc"[i % 3]}) for i in range(400)])
    out = metadata.mask(m, enc, p, np.random.default_rng(seed))
    unknown = enc.unknown()
    for _f, a, b in enc.slices():
        hidden = np.all(out[:, a:b] == unknown[a:b], axis=1)
        kept = np.all(out[:, a:b] == m[:, a:b], axis=1)
        assert np.all(hidden | kept)  # a field is kept or wholly unknown, never mixed
        assert abs(hidden.mean() - p) < 0.12  # 400 draws: ~5 standard deviations
    assert metadata.mask(m, enc, 0.0, np.random.default_rng(seed)) is m
