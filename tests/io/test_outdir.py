"""io.outdir: a command's output folder keeps every file the command did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermai.errors import DermaiError
from dermai.io.atomic import unsafe_reason
from dermai.io.outdir import MARKER, output_dir


def write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()
    }


def test_stale_own_files_go_other_files_stay(tmp_path):
    out = tmp_path / "out"
    with output_dir(out, "dermai x") as o:
        write(o.staging, {"a.txt": "1", "sub/b.txt": "2", "gone/c.txt": "3"})
    assert json.loads((out / MARKER).read_text()) == {
        "files": ["a.txt", "gone/c.txt", "sub/b.txt"],
        "written_by": "dermai x",
    }
    write(out, {"mine.txt": "m", "sub/mine.txt": "m"})
    with output_dir(out, "dermai x") as o:
        write(o.staging, {"a.txt": "1'", "sub/b.txt": "2'"})
    got = tree(out)
    got.pop(MARKER)
    assert got == {"a.txt": "1'", "sub/b.txt": "2'", "mine.txt": "m", "sub/mine.txt": "m"}
    assert not (out / "gone").exists()  # emptied by removing our own stale file


def test_a_failed_run_changes_nothing(tmp_path):
    out = tmp_path / "out"
    with output_dir(out, "dermai x") as o:
        write(o.staging, {"a.txt": "1"})
    before = tree(out)
    with pytest.raises(RuntimeError), output_dir(out, "dermai x") as o:
        write(o.staging, {"a.txt": "2"})
        raise RuntimeError("boom")
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refusals(tmp_path, monkeypatch):
    write(tmp_path / "theirs", {"x": "1"})
    with pytest.raises(DermaiError, match="did not write"), output_dir(tmp_path / "theirs", "c"):
        pass
    with output_dir(tmp_path / "other", "dermai a") as o:
        write(o.staging, {"f": "1"})
    refused = pytest.raises(DermaiError, match="holds the output of dermai a")
    with refused, output_dir(tmp_path / "other", "dermai b"):
        pass
    # a file of the user's where this run writes one of its own
    with output_dir(tmp_path / "mine", "dermai a") as o:
        write(o.staging, {"f": "1"})
    write(tmp_path / "mine", {"g": "user"})
    refused = pytest.raises(DermaiError, match="not written by dermai a")
    with refused, output_dir(tmp_path / "mine", "dermai a") as o:
        write(o.staging, {"f": "2", "g": "ours"})
    assert tree(tmp_path / "mine")["g"] == "user" and tree(tmp_path / "mine")["f"] == "1"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DermaiError, match="not a folder"), output_dir(tmp_path / "file", "c"):
        pass
    work = tmp_path / "w" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert unsafe_reason(".") == "is the current folder"
    assert unsafe_reason("..") == "is a parent of the current folder"
    assert unsafe_reason("~") == "is the home folder"
    assert unsafe_reason("/") == "is the filesystem root"
    assert unsafe_reason("sub") is None and unsafe_reason(tmp_path / "new") is None
