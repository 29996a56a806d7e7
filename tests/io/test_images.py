"""Finding user images: recursion, names without extensions, clear reasons for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

import tinymodel
from dermai.core.hashing import ImageRejected
from dermai.io.images import FolderIndex, expand, read


def test_expand_find_and_read(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    tinymodel.tinted(0).save(tmp_path / "a" / "x.jpg")
    tinymodel.tinted(1).save(tmp_path / "a" / "b" / "y.PNG")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    found = expand([tmp_path / "a", tmp_path / "bad.jpg", tmp_path / "missing.jpg"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/x.jpg",
        "a/b/y.PNG",
        "bad.jpg",
        "missing.jpg",
    ]
    assert read(found[0]).mode == "RGB"
    with pytest.raises(ImageRejected, match="not an image"):
        read(found[2])
    with pytest.raises(ImageRejected, match="not found"):
        read(found[3])

    index = FolderIndex(tmp_path)
    assert index.find("x") == tmp_path / "a" / "x.jpg"
    assert index.find("a/x") == tmp_path / "a" / "x.jpg"
    assert index.find("a/b/y.PNG") == tmp_path / "a" / "b" / "y.PNG"
    assert index.find("bad") == tmp_path / "bad.jpg"
    with pytest.raises(ImageRejected, match="not found"):
        index.find("nope")


def test_ambiguous_stem(tmp_path: Path):
    for d in ("p", "q"):
        (tmp_path / d).mkdir()
        tinymodel.tinted(0).save(tmp_path / d / "same.jpg")
    with pytest.raises(ImageRejected, match="ambiguous"):
        FolderIndex(tmp_path).find("same")
