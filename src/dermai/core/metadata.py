"""Patient metadata (age, sex, body site, ...) as one vector appended to the head's input.

Pure: the encoder is fitted on the TRAINING rows' raw strings and written into the model's files
as JSON (`Encoder.to_dict`), so that train, evaluate, predict, serve and the on-device page
(web-ondevice/metadata.js, the same rules in JavaScript) build the same vector from the same
answers. Every field has an explicit unknown, so a model trained with metadata still answers
when a user gives none of it:

- `age` (years): two numbers, [age / AGE_SCALE, 1] when known, [0, 0] when unknown.
- any other field (sex, site, age_group, a manifest's extra column such as itch): one-hot over
  the values seen in training, sorted, then one `unknown` slot. A value training never saw is
  unknown too (its slot would have no trained weight).

A value is unknown when it is empty or one of UNKNOWN_VALUES, after trimming and lower-casing.
`mask` sets each field of each row to unknown with a probability (`train.metadata_dropout`),
so the unknown path is trained as well.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AGE = "age"
AGE_SCALE = 100.0  # years -> the age input (a 100-year-old gives 1.0)
MAX_AGE = 130.0  # an age above this (or below 0) is a typo: unknown
UNKNOWN = "unknown"
# Raw values that mean "not known" (after strip + lower): blanks and the usual placeholders.
UNKNOWN_VALUES = ("", "unknown", "unk", "nan", "none", "na", "n/a", "null", "?", "-")
VERSION = 1
# An age must be a plain decimal number (no hex, inf or digit separators): the rule the
# on-device page's JavaScript applies too (web/ondevice/metadata.js).
AGE_PATTERN = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"


def normalise(value: object) -> str:
    """A raw answer as the vocabulary holds it: trimmed, lower-case; '' for unknown."""
    text = "" if value is None else str(value).strip().lower()
    return "" if text in UNKNOWN_VALUES else text


def parse_age(value: object) -> float | None:
    """Years as a number, or None when unknown or implausible."""
    text = normalise(value)
    if re.fullmatch(AGE_PATTERN, text) is None:
        return None
    years = float(text)
    return years if math.isfinite(years) and 0.0 <= years <= MAX_AGE else None


@dataclass(frozen=True)
class Encoder:
    """The fitted encoding: the fields in input order and each categorical field's values."""

    fields: tuple[str, ...]
    vocab: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def size(self, name: str) -> int:
        """How many numbers field `name` takes in the vector."""
        return 2 if name == AGE else len(self.vocab[name]) + 1

    @property
    def width(self) -> int:
        return sum(self.size(f) for f in self.fields)

    def slices(self) -> list[tuple[str, int, int]]:
        """(field, start, stop) of each field in the vector."""
        out, start = [], 0
        for f in self.fields:
            out.append((f, start, start + self.size(f)))
            start += self.size(f)
        return out

    def encode_field(self, name: str, value: object) -> list[float]:
        if name == AGE:
            years = parse_age(value)
            return [0.0, 0.0] if years is None else [years / AGE_SCALE, 1.0]
        values = self.vocab[name]
        slot = values.index(v) if (v := normalise(value)) in values else len(values)
        return [1.0 if k == slot else 0.0 for k in range(len(values) + 1)]

    def known(self, name: str, value: object) -> bool:
        """Whether `value` of field `name` is used (not encoded as unknown)."""
        if name == AGE:
            return parse_age(value) is not None
        return normalise(value) in self.vocab[name]

    def encode(self, answers: Mapping[str, object]) -> np.ndarray:
        """One vector (float32) from {field: raw answer}; a field not given is unknown."""
        out: list[float] = []
        for f in self.fields:
            out += self.encode_field(f, answers.get(f))
        return np.asarray(out, dtype=np.float32)

    def encode_columns(self, columns: Mapping[str, Sequence[object]]) -> np.ndarray:
        """Rows x width (float32) from {field: raw value per row}."""
        n = len(next(iter(columns.values()))) if columns else 0
        if not self.fields:
            return np.zeros((n, 0), np.float32)
        return np.stack([self.encode({f: columns[f][i] for f in self.fields}) for i in range(n)])

    def unknown(self) -> np.ndarray:
        """The vector of a user who answered nothing."""
        return self.encode({})

    def to_dict(self) -> dict[str, Any]:
        """JSON for the model's files: what any runtime needs to encode the same way."""
        return {
            "version": VERSION,
            "fields": list(self.fields),
            "vocab": {f: list(v) for f, v in self.vocab.items()},
            "width": self.width,
            "layout": [
                {
                    "field": f,
                    "start": a,
                    "size": b - a,
                    "kind": "age" if f == AGE else "categorical",
                }
                for f, a, b in self.slices()
            ],
            "age_scale": AGE_SCALE,
            "age_pattern": AGE_PATTERN,
            "max_age": MAX_AGE,
            "unknown_values": list(UNKNOWN_VALUES),
            "encoding": (
                "age: [years / age_scale, 1] if known else [0, 0] (years: a decimal number "
                "matching age_pattern, in [0, max_age]); "
                "other fields: one-hot over vocab (sorted) then an unknown slot; a value is "
                "trimmed and lower-cased, and unknown when in unknown_values or not in vocab"
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Encoder:
        if int(d.get("version", 0)) != VERSION:
            raise ValueError(f"metadata encoding version {d.get('version')} is not {VERSION}")
        enc = cls(
            tuple(d["fields"]), {str(f): tuple(str(x) for x in v) for f, v in d["vocab"].items()}
        )
        if enc.width != int(d["width"]):
            raise ValueError(f"metadata encoding width {d['width']} != {enc.width} of its vocab")
        return enc


def fit(fields: Sequence[str], columns: Mapping[str, Sequence[object]]) -> Encoder:
    """The encoder of `fields` from the TRAINING rows' raw values ({field: values})."""
    missing = [f for f in fields if f not in columns]
    if missing:
        raise ValueError(
            f"metadata field(s) {', '.join(missing)} not in the data; it has "
            f"{', '.join(sorted(columns)) or 'none'}"
        )
    vocab = {
        f: tuple(sorted({normalise(v) for v in columns[f]} - {""})) for f in fields if f != AGE
    }
    return Encoder(tuple(fields), vocab)


def mask(m: np.ndarray, enc: Encoder, p: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of rows `m` with each field of each row set to unknown with probability `p`
    (one draw per row and field, in field order)."""
    if p <= 0 or not enc.fields or len(m) == 0:
        return m
    out = np.array(m, dtype=np.float32, copy=True)
    unknown = enc.unknown()
    for _f, a, b in enc.slices():
        hit = rng.random(len(out)) < p
        out[hit, a:b] = unknown[a:b]
    return out
