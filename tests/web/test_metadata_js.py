"""The on-device page's metadata encoder (web/ondevice/metadata.js, run by node) builds exactly
the vector of core.metadata (Python) from the same answers: all, some and none known, odd
spellings, placeholders, unseen values and ages that are not plain decimal numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dermai.core import metadata

NODE = shutil.which("node")
JS = Path(__file__).resolve().parents[2] / "src" / "dermai" / "web" / "ondevice" / "metadata.js"

ANSWERS = [
    {},
    {"age": "45", "sex": "female", "site": "back", "itch": "True"},
    {"site": "FACE "},
    {"age": " 62.5 ", "sex": "UNK"},
    {"age": "1_000"},
    {"age": "0x10"},
    {"age": "inf"},
    {"age": "1e2", "sex": "other"},
    {"age": "-1"},
    {"age": "131"},
    {"age": ".5", "site": "n/a"},
    {"age": "+7", "itch": "?"},
    {"age": 30, "sex": None},
    {"site": "scalp", "itch": "false"},
]


@pytest.mark.skipif(NODE is None, reason="needs node")
def test_javascript_encodes_as_python_does() -> None:
    enc = metadata.fit(
        ["age", "sex", "site", "itch"],
        {
            "age": ["40", "", "x"],
            "sex": ["female", "MALE", ""],
            "site": ["back", "face", "unknown"],
            "itch": ["True", "False", ""],
        },
    )
    doc = enc.to_dict()
    script = (
        f"import {{encodeMetadata, isKnown}} from {json.dumps(JS.as_uri())};\n"
        f"const doc = {json.dumps(doc)};\n"
        f"const answers = {json.dumps(ANSWERS)};\n"
        "console.log(JSON.stringify(answers.map((a) => [Array.from(encodeMetadata(doc, a)),"
        " doc.fields.map((f) => f in a && isKnown(doc, f, a[f]))])));\n"
    )
    out = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    got = json.loads(out.stdout)
    for answers, (vector, known) in zip(ANSWERS, got, strict=True):
        want = enc.encode(answers)
        np.testing.assert_array_equal(np.asarray(vector, np.float32), want, err_msg=str(answers))
        assert known == [f in answers and enc.known(f, answers[f]) for f in enc.fields], answers
