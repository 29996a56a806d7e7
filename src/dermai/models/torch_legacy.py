"""Read PyTorch `.pth` state dicts into numpy arrays without importing torch.

A `.pth` file is a pickle, and unpickling can run arbitrary code, so the unpickler here resolves
only the few globals a plain tensor state dict needs (tensor-rebuild functions, typed storage
classes, OrderedDict) to inert stand-ins and refuses everything else. Both on-disk layouts are
handled: the legacy stream (torch < 1.6 default: magic, protocol, sys_info, the pickled object,
the storage keys, then each storage as int64 element count + raw little-endian bytes) and the
zip archive (`<prefix>/data.pkl` plus one raw file per storage under `<prefix>/data/`).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from dermai.errors import DermaiError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> little-endian numpy dtype. bfloat16 has no numpy dtype: it is read as
# uint16 and widened to float32 (exact, bfloat16 is the top half of a float32).
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    """A storage whose bytes are read after the pickle (legacy) or from the archive (zip)."""

    key: str
    stype: _StorageType
    numel: int
    data: np.ndarray | None = None
    # Legacy storage views: (root storage, element offset into it).
    root: _Storage | None = None
    offset: int = 0

    def array(self) -> np.ndarray:
        if self.root is not None:
            return self.root.array()[self.offset : self.offset + self.numel]
        if self.data is None:
            raise DermaiError(f"torch file: storage {self.key!r} has no data")
        return self.data


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise DermaiError("torch file: tensor does not point to a storage")
    try:
        return _TensorRef(
            storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
        )
    except (TypeError, ValueError) as exc:
        raise DermaiError(f"torch file: malformed tensor metadata ({exc})") from exc


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    if backward_hooks:
        raise DermaiError("torch file: tensors with backward hooks are not supported")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> Any:
    if not isinstance(data, _TensorRef):
        raise DermaiError("torch file: parameter does not wrap a tensor")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; storages become `_Storage` placeholders."""

    def __init__(self, fh: IO[bytes], persistent: Callable[[Any], Any] | None) -> None:
        super().__init__(fh, encoding="utf-8")
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise DermaiError(
                f"torch file: refusing to unpickle global {module}.{name} "
                "(only plain tensor state dicts are allowed)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise DermaiError("torch file: unexpected persistent id in header")
        return self._persistent(pid)


def _unpickle(fh: IO[bytes], persistent: Callable[[Any], Any] | None = None) -> Any:
    try:
        return _RestrictedUnpickler(fh, persistent).load()
    except DermaiError:
        raise
    except Exception as exc:  # pickle raises many types on corrupt input
        raise DermaiError(f"torch file: corrupt pickle ({type(exc).__name__}: {exc})") from exc


def _storage_type(obj: Any) -> _StorageType:
    if not isinstance(obj, _StorageType):
        raise DermaiError(f"torch file: unsupported storage type {obj!r}")
    return obj


def _read_legacy(fh: IO[bytes]) -> Any:
    magic = _unpickle(fh)
    if magic != LEGACY_MAGIC:
        raise DermaiError("torch file: not a PyTorch file (bad magic number)")
    protocol = _unpickle(fh)
    if protocol != LEGACY_PROTOCOL:
        raise DermaiError(f"torch file: unsupported legacy protocol {protocol!r}")
    sys_info = _unpickle(fh)
    if not isinstance(sys_info, dict):
        raise DermaiError("torch file: malformed sys_info header")

    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) != 6:
            raise DermaiError(f"torch file: unsupported persistent id {str(pid)[:60]!r}")
        _, stype, root_key, _location, numel, view = pid
        stype = _storage_type(stype)
        root_key = str(root_key)
        if root_key not in storages:
            storages[root_key] = _Storage(root_key, stype, int(numel))
        root = storages[root_key]
        if view is None:
            return root
        view_key, offset, view_size = view
        view_key = str(view_key)
        if view_key not in storages:
            storages[view_key] = _Storage(
                view_key, stype, int(view_size), root=root, offset=int(offset)
            )
        return storages[view_key]

    result = _unpickle(fh, persistent)
    keys = _unpickle(fh)
    if not isinstance(keys, list):
        raise DermaiError("torch file: malformed storage key list")
    rest = fh.read()
    pos = 0
    for key in keys:
        storage = storages.get(str(key))
        if storage is None or storage.root is not None:
            raise DermaiError(f"torch file: storage key {key!r} not referenced by any tensor")
        if pos + 8 > len(rest):
            raise DermaiError("torch file: truncated (storage header)")
        numel = int.from_bytes(rest[pos : pos + 8], "little", signed=True)
        pos += 8
        if numel != storage.numel:
            raise DermaiError(
                f"torch file: storage {key!r} holds {numel} elements, pickle says {storage.numel}"
            )
        nbytes = numel * storage.stype.dtype.itemsize
        if pos + nbytes > len(rest):
            raise DermaiError(f"torch file: truncated (storage {key!r})")
        storage.data = np.frombuffer(rest, storage.stype.dtype, count=numel, offset=pos)
        pos += nbytes
    if pos != len(rest):
        raise DermaiError(f"torch file: {len(rest) - pos} unexpected trailing bytes")
    return result


def _read_zip(fh: IO[bytes]) -> Any:
    with zipfile.ZipFile(fh) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise DermaiError("torch file: zip archive without exactly one data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = zf.read(f"{prefix}byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            raise DermaiError(f"torch file: unknown byteorder {byteorder!r}")
        storages: dict[str, _Storage] = {}

        def persistent(pid: Any) -> Any:
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
                raise DermaiError(f"torch file: unsupported persistent id {str(pid)[:60]!r}")
            _, stype, key, _location, numel = pid
            stype = _storage_type(stype)
            key = str(key)
            if key not in storages:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise DermaiError(f"torch file: archive lacks storage {member}")
                raw = zf.read(member)
                dtype = stype.dtype
                if byteorder == "big":
                    dtype = dtype.newbyteorder(">")
                nbytes = int(numel) * dtype.itemsize
                if len(raw) < nbytes:
                    raise DermaiError(f"torch file: storage {key!r} is truncated")
                data = np.frombuffer(raw, dtype, count=int(numel)).astype(stype.dtype)
                storages[key] = _Storage(key, stype, int(numel), data=data)
            return storages[key]

        with zf.open(pkls[0]) as pkl:
            return _unpickle(io.BytesIO(pkl.read()), persistent)


def _materialize(ref: _TensorRef) -> np.ndarray:
    base = ref.storage.array()
    if len(ref.size) != len(ref.stride):
        raise DermaiError("torch file: tensor size and stride lengths differ")
    if any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise DermaiError("torch file: negative tensor size, stride or offset")
    if 0 in ref.size:
        out = np.zeros(ref.size, base.dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= base.size:
            raise DermaiError("torch file: tensor view reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset :],
            shape=ref.size,
            strides=tuple(s * base.itemsize for s in ref.stride),
            writeable=False,
        )
        out = np.array(view, copy=True, order="C")
    if ref.storage.stype.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, _TensorRef):
        out[prefix] = _materialize(obj)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise DermaiError(f"torch file: non-string key {k!r}")
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        raise DermaiError(
            f"torch file: {prefix or 'top level'} is a {type(obj).__name__}, not a tensor"
        )


def read_state_dict(fh: IO[bytes]) -> dict[str, np.ndarray]:
    """Read a state dict from a seekable binary file object (legacy or zip layout)."""
    head = fh.read(4)
    fh.seek(0)
    obj = _read_zip(fh) if head.startswith(b"PK\x03\x04") else _read_legacy(fh)
    if not isinstance(obj, Mapping):
        raise DermaiError(f"torch file: top level is a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    return out


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """`{name: array}` from a `.pth` file; nested mappings get dotted names."""
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"torch file not found: {path}")
    with open(path, "rb") as fh:
        try:
            return read_state_dict(fh)
        except DermaiError as exc:
            raise DermaiError(f"{path}: {exc}") from exc
