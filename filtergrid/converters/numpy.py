"""NumPy ``.npy`` and ``.npz``: the arrays of CS231n assignments and of hand-rolled nets.

Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html. Headers are parsed by
NumPy's own ``read_array_header_*`` (a literal parser, no pickle); object arrays are refused and the
declared shape is checked against the bytes present before the array is read.
"""

from __future__ import annotations

import math
import warnings
from typing import IO

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, FiltergridError, UnreadableFeatureError, UnsafeFileError, plain
from ..export import ARRAY, MARKER, bank_listing, parse_record, sidecar_name
from ..firstlayer import order_by_evidence
from ..layout import ARRAYS
from ..safeio import (
    ModelPath,
    check_member_name,
    model_path,
    open_zip,
    resolve_inside,
    zip_errors,
)
from .base import Probe, listing_by_name, lookup, not_found

MAGIC = b"\x93NUMPY"


def sniff(probe: Probe) -> bool:
    if probe.head.startswith(MAGIC):
        return True
    names = probe.zip_names
    return bool(names) and all(n.endswith(".npy") for n in names)


def _header(f: IO[bytes], available: int, what: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, header bytes) with the declared size checked against ``available``."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise CorruptFileError(f"{what}: unsupported .npy version {version}")
        with warnings.catch_warnings():  # NumPy warns on Python 2 headers; the file reads fine
            warnings.simplefilter("ignore")
            shape, fortran, dtype = read[version](f)
    except FiltergridError:
        raise
    except Exception as e:  # noqa: BLE001 - NumPy's literal parser raises ValueError, SyntaxError, TokenError, ...
        raise CorruptFileError(f"{what}: bad .npy header ({plain(e)})") from None
    if dtype.hasobject:
        raise UnsafeFileError(f"{what} holds Python objects (dtype {dtype}); they need pickle, which filtergrid never runs")
    if dtype.kind not in "fiub":
        raise UnreadableFeatureError(f"{what} has non-numeric dtype {dtype}")
    used = f.tell()  # every caller passes a file positioned at its first byte
    shape = dtypes.check_shape(shape)
    need = math.prod(shape) * dtype.itemsize
    if need > available - used:
        raise CorruptFileError(f"{what} declares {list(shape)} {dtype} = {need:,} bytes but holds {available - used:,}")
    return dtype, shape, fortran, used


def _read(f: IO[bytes], dtype: np.dtype, shape: tuple[int, ...], fortran: bool, rows: int | None) -> np.ndarray:
    if rows is not None and not fortran and shape and rows < shape[0]:
        shape = (rows, *shape[1:])
    count = math.prod(shape)  # bounded by check_shape: no overflow
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise CorruptFileError(f"array data ends early ({len(data):,} of {count * dtype.itemsize:,} bytes)")
    array = np.frombuffer(data, dtype=dtype)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


class NpyReader:
    """One array: its name is the file's stem."""

    def __init__(self, path: ModelPath):
        self.path, self.name = path, path.stem
        self._file = path.open("rb")
        self._dtype, self._shape, self._fortran, self._data_start = _header(self._file, path.stat().st_size, path.name)
        self.bank_record = self._sidecar_record()

    def _sidecar_record(self) -> dict | None:
        """The record ``convert`` wrote beside a ``.npy`` bank (``bank.npy.filtergrid.json``), if any."""
        record = resolve_inside(self.path.parent, sidecar_name(self.path.name), "bank record")
        if not record.is_file():
            return None
        limits.check("MAX_HEADER_BYTES", record.stat().st_size, f"bytes of {record.name}")
        with record.open("rb") as f:
            return parse_record(f.read(limits.MAX_HEADER_BYTES))

    def tensors(self) -> list[TensorInfo]:
        if self.bank_record is not None:
            return bank_listing([(ARRAY, self._shape, self._dtype.name)])
        return listing_by_name([(self.name, self._shape, self._dtype.name)], ARRAYS, "the file's only array")

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name != (ARRAY if self.bank_record is not None else self.name):
            raise not_found(name)
        self._file.seek(self._data_start)  # a second read starts at the data again
        return _read(self._file, self._dtype, self._shape, self._fortran, rows)

    def close(self) -> None:
        self._file.close()


class NpzReader:
    """A zip of ``.npy`` members; the listing reads each member's header only."""

    def __init__(self, path: ModelPath):
        self.path = path
        with zip_errors(path.name):
            self._zip = open_zip(path)
            self._headers = self._read_headers()
        self.bank_record = self._record()

    def _record(self) -> dict | None:
        """The record of a bank ``convert`` wrote (a uint8 JSON member), if this is one."""
        header = self._headers.get(MARKER)
        if header is None:
            return None
        if header[1] != np.uint8 or len(header[2]) != 1:
            raise CorruptFileError(f"member {MARKER!r} is no bank record ({header[1]} {list(header[2])})")
        limits.check("MAX_HEADER_BYTES", header[2][0], f"bytes of member {MARKER!r}")
        return parse_record(self.read(MARKER).tobytes())

    def _read_headers(self) -> dict:
        infos = self._zip.infolist()
        limits.check("MAX_TENSORS", len(infos), "members of the npz archive")
        headers = {}
        for member in infos:
            check_member_name(member.filename, "npz member")
            if not member.filename.endswith(".npy"):
                continue
            limits.check("MAX_ZIP_MEMBER_BYTES", member.file_size, f"inflated bytes of member {member.filename!r}")
            with self._zip.open(member) as f:
                headers[member.filename[:-4]] = (member, *_header(f, member.file_size, member.filename))
        return headers

    def tensors(self) -> list[TensorInfo]:
        entries = [(k, h[2], h[1].name) for k, h in self._headers.items()]
        if self.bank_record is not None:
            return bank_listing(entries)
        return order_by_evidence(listing_by_name(entries, ARRAYS, "first weight in natural name order"))

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        member, dtype, shape, fortran, used = lookup(self._headers, name)
        with zip_errors(self.path.name), self._zip.open(member) as f:
            f.read(used)
            return _read(f, dtype, shape, fortran, rows)

    def close(self) -> None:
        self._zip.close()


def open(path: ModelPath) -> NpyReader | NpzReader:  # noqa: A001 - the registry's verb
    path = model_path(path)
    with path.open("rb") as f:
        is_npy = f.read(len(MAGIC)) == MAGIC
    return NpyReader(path) if is_npy else NpzReader(path)
