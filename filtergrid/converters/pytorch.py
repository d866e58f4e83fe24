"""PyTorch checkpoints (``torch.save``: zip archives and the legacy pickle stream), without torch.

Zip format (torch >= 1.6): ``<prefix>/data.pkl`` is the object pickle; each storage is a member
``<prefix>/data/<key>`` of raw little-endian elements (``<prefix>/byteorder`` may say big). The
members are stored uncompressed, so one tensor is read by seeking to its bytes.

Legacy format (``_use_new_zipfile_serialization=False``): five pickles in a row (magic number,
protocol version 1001, system info, the object, the list of storage keys), then each storage as an
8-byte element count and its raw bytes. One pass records where each storage starts.

Both pickles go through :mod:`filtergrid.safepickle`; nothing in the file is executed.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import numpy as np

from .. import dtypes, limits, safepickle
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, UnreadableFeatureError
from ..layout import CHANNELS_FIRST
from ..safeio import (
    ModelPath,
    check_extent,
    check_member_name,
    model_path,
    open_zip,
    read_exact,
    zip_errors,
)
from .base import Probe, lookup, tensor_info
from .torch_objects import (
    BUILD_IGNORED,
    ELEMENT_SIZE,
    QUANTIZED,
    TORCH_ALLOWED,
    NamedTensor,
    StorageRef,
    TensorRef,
    model_tensors,
    storage_of,
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_LEGACY_MAGIC_BYTES = LEGACY_MAGIC.to_bytes(10, "little")
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def sniff(probe: Probe) -> bool:
    if probe.head.startswith(b"PK"):
        return archive_prefix(probe.zip_names) is not None
    return probe.head.startswith(b"\x80") and _LEGACY_MAGIC_BYTES in probe.head[:32]


def open(path: ModelPath) -> TorchReader:
    path = model_path(path)
    with path.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    return open_archive(path) if zipped else open_legacy(path)


def archive_prefix(names: tuple[str, ...]) -> str | None:
    """The one top folder holding ``data.pkl`` in a torch zip (``archive``, the file's stem ...)."""
    prefixes = {n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1}
    return prefixes.pop() if len(prefixes) == 1 else None


class StorageSource(Protocol):
    """Where the raw bytes of each storage record live."""

    def nbytes(self, key: str) -> int: ...

    def read(self, key: str, start: int, length: int) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class TorchReader:
    """Named tensors of a torch file and the source of their bytes; reads one tensor on demand."""

    found: list[NamedTensor]
    what: str
    source: StorageSource
    big_endian: bool = False
    #: What the file records of its writer: format version, byte order (torch writes no version of itself).
    written_by: Producer | None = None
    by_name: dict[str, TensorRef] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {}
        for item in self.found:
            self.by_name.setdefault(item.name, item.tensor)

    def producer(self) -> Producer | None:
        return self.written_by

    def tensors(self) -> list[TensorInfo]:
        infos = []
        for item in self.found:
            shape, dtype = item.tensor.size, item.tensor.dtype
            if dtype not in dtypes.STORAGE and dtype not in QUANTIZED:
                infos.append(TensorInfo(item.name, shape, dtype, layout_of(item), CHANNELS_FIRST.flatten,
                                        f"element type {dtype} is not supported", False))
            else:
                infos.append(tensor_info(item.name, shape, dtype, layout_of(item), CHANNELS_FIRST.flatten,
                                         f"weight of {self.what}, in module order"))
        return infos  # module order is model order: the first weight in it is the first layer

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        ref = lookup(self.by_name, name)
        size = ref.size
        if rows is not None and size:
            size = (min(size[0], rows), *size[1:])
        values = self._elements(ref, size)
        q = ref.quantization
        if q is None:
            return dtypes.native(values, ref.dtype)
        scale, zero = q.scale, q.zero_point
        if q.axis is not None:
            scale, zero = self._elements(q.scale, q.scale.size), self._elements(q.zero_point, q.zero_point.size)
        return dtypes.dequantize(values, scale, zero, q.axis, length=ref.size[0] if ref.size else None)

    def _elements(self, ref: TensorRef, size: tuple[int, ...]) -> np.ndarray:
        """The strided view ``ref`` describes, as a (read-only) NumPy array of its stored element type."""
        element = QUANTIZED.get(ref.dtype, ref.dtype)
        if element not in dtypes.STORAGE:
            raise UnreadableFeatureError(f"element type {ref.dtype} is not supported")
        dims = dtypes.check_shape(size)
        stored = dtypes.STORAGE[element].newbyteorder(">" if self.big_endian else "<")
        if math.prod(dims) == 0:
            return np.zeros(dims, stored.newbyteorder("="))
        if ref.offset < 0 or any(s < 0 for s in ref.stride):
            raise CorruptFileError(f"tensor has a negative offset or stride ({ref.offset}, {list(ref.stride)})")
        storage, item = ref.storage, stored.itemsize
        # Elements from the tensor's first to its last, counted in the tensor's element type.
        extent = 1 + sum((d - 1) * s for d, s in zip(dims, ref.stride))
        declared = storage.numel * ELEMENT_SIZE[storage.element]
        dtypes.check_fits((ref.offset + extent,), element, declared, f"tensor view into storage {storage.key}")
        limits.check("MAX_TENSOR_BYTES", extent * item, "bytes a tensor view spans")
        # A view may repeat stored elements (stride 0), but not blow a few bytes up to gigabytes.
        limits.check("MAX_WORK_PER_BYTE", math.prod(dims) * 4 // (extent * item),
                     "float32 bytes decoded per stored byte of a tensor view")
        first = storage.start * ELEMENT_SIZE[storage.element] + ref.offset * item
        dtypes.check_fits(((storage.start + storage.numel) * ELEMENT_SIZE[storage.element],), "uint8",
                          self.source.nbytes(storage.key), f"storage {storage.key}")
        raw = self.source.read(storage.key, first, extent * item)
        flat = np.frombuffer(raw, dtype=stored)  # the source read exactly extent elements
        view = np.lib.stride_tricks.as_strided(flat, shape=dims, strides=[s * item for s in ref.stride], writeable=False)
        return view.astype(stored.newbyteorder("="), copy=False)  # a read-only view: dtypes copies it out

    def close(self) -> None:
        self.source.close()


def layout_of(item: NamedTensor) -> str:
    """Stored layout: torch is channels-first, and a ConvTranspose module's weight is IOHW."""
    if len(item.tensor.size) == 4 and "ConvTranspose" in item.owner:
        return "IOHW"
    return CHANNELS_FIRST.layout_for(item.tensor.size)


class _ArchiveStorages:
    """Storages of a torch zip: ``<prefix>/data/<key>`` members, read by seeking when stored."""

    def __init__(self, path: ModelPath, archive: zipfile.ZipFile, prefix: str):
        self._archive, self._prefix = archive, prefix
        self._file: BinaryIO = path.open("rb")
        self._size = path.stat().st_size

    def _member(self, key: str) -> zipfile.ZipInfo:
        try:
            return self._archive.getinfo(f"{self._prefix}/data/{key}")
        except KeyError:
            raise CorruptFileError(f"storage {key} is missing (no member {self._prefix}/data/{key})") from None

    def nbytes(self, key: str) -> int:
        return self._member(key).file_size

    def read(self, key: str, start: int, length: int) -> bytes:
        info = self._member(key)
        check_extent(start, length, info.file_size, f"storage {key}")
        with zip_errors(f"storage {key}"):
            return self._read(info, key, start, length)

    def _read(self, info: zipfile.ZipInfo, key: str, start: int, length: int) -> bytes:
        if info.compress_type == zipfile.ZIP_STORED:
            check_extent(info.header_offset, _LOCAL_HEADER.size, self._size, f"zip header of {info.filename}")
            self._file.seek(info.header_offset)
            magic, name_length, extra_length = _LOCAL_HEADER.unpack(read_exact(self._file, _LOCAL_HEADER.size, "zip header"))
            if magic != b"PK\x03\x04":
                raise CorruptFileError(f"zip member {info.filename} has no local header")
            data_offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            check_extent(data_offset, info.file_size, self._size, f"zip member {info.filename}")
            self._file.seek(data_offset + start)
            return read_exact(self._file, length, f"storage {key}")
        limits.check("MAX_ZIP_MEMBER_BYTES", info.file_size, f"inflated bytes of compressed storage {key}")
        with self._archive.open(info) as member:
            member.seek(start)
            return read_exact(member, length, f"storage {key}")

    def close(self) -> None:
        self._file.close()
        self._archive.close()


def open_archive(path: ModelPath, module_kind: str = "pickled module") -> TorchReader:
    """A torch zip (``torch.save`` or ``torch.jit.save``): unpickle ``data.pkl``, storages stay on disk."""
    with zip_errors("torch archive"):
        archive = open_zip(path)
    try:
        names = archive.namelist()
        for name in names:
            check_member_name(name)
        prefix = archive_prefix(tuple(names))
        if prefix is None:
            raise CorruptFileError("zip archive has no single <folder>/data.pkl, so it is no torch file")
        big_endian = _big_endian(archive, prefix)
        info = archive.getinfo(f"{prefix}/data.pkl")
        limits.check("MAX_PICKLE_BYTES", info.file_size, "bytes of data.pkl")
        with zip_errors("data.pkl"):
            data = archive.read(info)
        root = safepickle.loads(data, TORCH_ALLOWED, lambda pid: storage_of(pid, legacy=False),
                                BUILD_IGNORED, what="data.pkl")
        found, found_in = model_tensors(root, module_kind, len(data))
        version = _record(archive, prefix, "version") or _record(archive, prefix, ".data/version")
        written_by = Producer.recorded(format_version=f"torch zip format version {version}" if version else "",
                                       details=(f"byteorder {'big' if big_endian else 'little'}",
                                                # a torch.jit.save archive says what it is; torch.save's does not
                                                module_kind if module_kind.startswith("TorchScript") else ""))
        return TorchReader(found, found_in, _ArchiveStorages(path, archive, prefix), big_endian, written_by)
    except BaseException:
        archive.close()
        raise


def _record(archive: zipfile.ZipFile, prefix: str, name: str) -> str | None:
    """A one-line record of the archive (``byteorder``, ``version``): None when absent, "" when too long."""
    try:
        info = archive.getinfo(f"{prefix}/{name}")
    except KeyError:
        return None
    with zip_errors(f"{name} record"):
        return archive.read(info).decode("ascii", "replace").strip() if info.file_size <= 16 else ""


def _big_endian(archive: zipfile.ZipFile, prefix: str) -> bool:
    order = _record(archive, prefix, "byteorder")  # at most 16 characters
    if order is None:
        return False  # written since torch 1.12; older files are little-endian
    if order not in ("little", "big"):
        raise CorruptFileError(f"byteorder record says {order!r}, not little or big")
    return order == "big"


@dataclass
class _LegacyStorages:
    """Storages of a legacy file: byte ranges recorded while skipping over them once."""

    file: BinaryIO
    ranges: dict[str, tuple[int, int]]

    def nbytes(self, key: str) -> int:
        if key not in self.ranges:
            raise CorruptFileError(f"storage {key} is not in the file")
        return self.ranges[key][1]

    def read(self, key: str, start: int, length: int) -> bytes:
        offset, size = self.ranges[key]
        check_extent(start, length, size, f"storage {key}")
        self.file.seek(offset + start)
        return read_exact(self.file, length, f"storage {key}")

    def close(self) -> None:
        self.file.close()


def open_legacy(path: ModelPath) -> TorchReader:
    f = path.open("rb")
    try:
        size = path.stat().st_size
        if safepickle.load(f, what="legacy magic number") != LEGACY_MAGIC:
            raise CorruptFileError("neither a torch zip archive nor a legacy torch file (no magic number)")
        if safepickle.load(f, what="legacy protocol version") != LEGACY_PROTOCOL:
            raise CorruptFileError("legacy torch file has an unknown protocol version")
        system = safepickle.load(f, what="legacy system info")
        little = not isinstance(system, dict) or system.get("little_endian", True) is not False
        elements: dict[str, str] = {}

        def persistent(pid: object) -> object:
            storage = storage_of(pid, legacy=True)
            # The first mention of a key fixes its element size, which the record layout depends on.
            if isinstance(storage, StorageRef) and (
                    ELEMENT_SIZE[elements.setdefault(storage.key, storage.element)] != ELEMENT_SIZE[storage.element]):
                raise CorruptFileError(f"storage {storage.key} is named with two element sizes")
            return storage

        start = f.tell()
        root = safepickle.load(f, TORCH_ALLOWED, persistent, BUILD_IGNORED, what="legacy object pickle")
        pickle_bytes = f.tell() - start
        keys = safepickle.load(f, what="legacy storage list")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CorruptFileError("legacy storage list is not a list of keys")
        ranges, offset = {}, f.tell()
        for key in keys:  # each storage takes at least 8 bytes, so this ends with the file
            if key not in elements:  # known keys are short names (torch_objects.storage_of)
                raise CorruptFileError(f"storage {safepickle.shown(key)} is listed but no tensor uses it")
            check_extent(offset, 8, size, f"size of storage {key}")
            f.seek(offset)
            count = int.from_bytes(read_exact(f, 8, f"size of storage {key}"), "little" if little else "big")
            nbytes = count * ELEMENT_SIZE[elements[key]]
            check_extent(offset + 8, nbytes, size, f"storage {key}")
            ranges[key] = (offset + 8, nbytes)
            offset += 8 + nbytes
        found, found_in = model_tensors(root, pickle_bytes=pickle_bytes)
        written_by = Producer.recorded(format_version=f"legacy torch.save protocol {LEGACY_PROTOCOL}",
                                       details=(f"byteorder {'little' if little else 'big'}",))
        return TorchReader(found, found_in, _LegacyStorages(f, ranges), not little, written_by)
    except BaseException:
        f.close()
        raise
