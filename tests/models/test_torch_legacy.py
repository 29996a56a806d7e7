"""The torch-free `.pth` reader on files written here byte for byte the way torch writes them."""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dermai.errors import DermaiError
from dermai.models.torch_legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, load_state_dict


@contextlib.contextmanager
def fake_torch() -> Iterator[types.SimpleNamespace]:
    """Stand-ins named like torch's globals so `pickle` emits the same GLOBAL opcodes torch does.

    Registered in sys.modules only while writing; the reader never imports them.
    """
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    storages = {}
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
        storages[name] = cls
    torch._utils = utils  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield types.SimpleNamespace(rebuild=_rebuild_tensor_v2, **storages)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Storage:
    def __init__(self, key: str, data: np.ndarray, kind: str = "FloatStorage") -> None:
        self.key, self.data, self.kind = key, np.ascontiguousarray(data).ravel(), kind


class Tensor:
    """Pickles as torch's `_rebuild_tensor_v2(storage, offset, size, stride, grad, hooks)`."""

    rebuild = None

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):  # type: ignore[override]
        return (Tensor.rebuild, self.args)


def _pickler(fh: io.BufferedIOBase, ns: types.SimpleNamespace, legacy: bool) -> pickle.Pickler:
    p = pickle.Pickler(fh, protocol=2)

    def persistent_id(obj: object) -> tuple | None:
        if isinstance(obj, Storage):
            stype = getattr(ns, obj.kind)
            if legacy:
                return ("storage", stype, obj.key, "cpu", obj.data.size, None)
            return ("storage", stype, obj.key, "cpu", obj.data.size)
        return None

    p.persistent_id = persistent_id  # type: ignore[method-assign]
    return p


def write_legacy(path: Path, state: dict, storages: list[Storage]) -> None:
    """Legacy layout: magic, protocol, sys_info, the object, storage keys, raw storages."""
    with fake_torch() as ns, open(path, "wb") as fh:
        Tensor.rebuild = ns.rebuild
        for header in (
            LEGACY_MAGIC,
            LEGACY_PROTOCOL,
            {
                "protocol_version": LEGACY_PROTOCOL,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
        ):
            pickle.dump(header, fh, protocol=2)
        _pickler(fh, ns, legacy=True).dump(state)
        pickle.dump(sorted(s.key for s in storages), fh, protocol=2)
        for s in sorted(storages, key=lambda s: s.key):
            fh.write(np.int64(s.data.size).astype("<i8").tobytes())
            fh.write(s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())


def write_zip(path: Path, state: dict, storages: list[Storage]) -> None:
    buf = io.BytesIO()
    with fake_torch() as ns:
        Tensor.rebuild = ns.rebuild
        _pickler(buf, ns, legacy=False).dump(state)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.data.tobytes())
        zf.writestr("archive/version", "3\n")


def sample() -> tuple[dict, list[Storage], dict[str, np.ndarray]]:
    big = np.arange(24, dtype=np.float32) * 0.5 - 3.0
    w = Storage("0", big)
    steps = Storage("1", np.array([7], dtype=np.int64), "LongStorage")
    half = Storage("2", np.array([1.5, -2.25], dtype=np.float16), "HalfStorage")
    state = OrderedDict(
        conv=Tensor(w, 0, (2, 3, 4), (12, 4, 1)),
        transposed=Tensor(w, 0, (6, 4), (1, 6)),  # a non-contiguous view of the same storage
        window=Tensor(w, 7, (2, 3), (6, 1)),  # offset view
        steps=Tensor(steps, 0, (), ()),
        half=Tensor(half, 0, (2,), (1,)),
    )
    expected = {
        "conv": big.reshape(2, 3, 4),
        "transposed": big.reshape(4, 6).T,
        "window": big.reshape(4, 6)[1:3, 1:4],
        "steps": np.array(7, dtype=np.int64),
        "half": np.array([1.5, -2.25], dtype=np.float16),
    }
    return state, [w, steps, half], expected


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_roundtrip_exact(tmp_path: Path, writer) -> None:
    state, storages, expected = sample()
    path = tmp_path / "sd.pth"
    writer(path, state, storages)
    got = load_state_dict(path)
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable


def test_reader_does_not_import_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, storages, expected = sample()
    path = tmp_path / "sd.pth"
    write_legacy(path, state, storages)
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now raises
    got = load_state_dict(path)
    np.testing.assert_array_equal(got["conv"], expected["conv"])


def test_legacy_header_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    with open(path, "wb") as fh:
        pickle.dump(12345, fh, protocol=2)
    with pytest.raises(DermaiError, match="bad magic"):
        load_state_dict(path)


def test_truncated_storage_is_refused(tmp_path: Path) -> None:
    state, storages, _ = sample()
    path = tmp_path / "sd.pth"
    write_legacy(path, state, storages)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DermaiError, match="truncated"):
        load_state_dict(path)


def test_view_past_storage_end_is_refused(tmp_path: Path) -> None:
    w = Storage("0", np.zeros(4, np.float32))
    path = tmp_path / "sd.pth"
    write_legacy(path, {"x": Tensor(w, 2, (3,), (1,))}, [w])
    with pytest.raises(DermaiError, match="past the end"):
        load_state_dict(path)


def _header() -> bytes:
    buf = io.BytesIO()
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "call")],
)
def test_malicious_global_is_refused(tmp_path: Path, module: str, name: str) -> None:
    marker = tmp_path / "pwned"
    # GLOBAL module.name; arg tuple; REDUCE; STOP -- what `__reduce__` to os.system compiles to.
    arg = f"touch {marker}" if name != "eval" else f"open({str(marker)!r}, 'w')"
    payload = (
        b"\x80\x02c"
        + module.encode()
        + b"\n"
        + name.encode()
        + b"\n"
        + b"X"
        + len(arg.encode()).to_bytes(4, "little")
        + arg.encode()
        + b"\x85R."
    )
    for body in (payload, _header() + payload):  # as the whole file and as the legacy body
        path = tmp_path / "evil.pth"
        path.write_bytes(body)
        with pytest.raises(DermaiError, match=rf"refusing to unpickle global {module}\.{name}"):
            load_state_dict(path)
    assert not marker.exists()


def test_malicious_global_in_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(DermaiError, match=r"refusing to unpickle global os\.system"):
        load_state_dict(path)


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DermaiError, match="not found") as exc:
        load_state_dict(tmp_path / "nope.pth")
    assert "\n" not in str(exc.value)
