"""The MIL weight blob (``weights/weight.bin`` of an ``.mlpackage``): Core ML's documented storage format.

A 64-byte storage header (blob count, storage version 2), then for each blob a 64-byte metadata
record (sentinel 0xDEADBEEF, data type, size in bytes, offset of the data) followed by the data.
The program names a blob by file and metadata offset; shapes live only in the program.
"""

from __future__ import annotations

import contextlib
import struct

import numpy as np

from ... import dtypes
from ...errors import CorruptFileError
from ...safeio import ModelPath, check_extent, map_readonly, window

HEADER = struct.Struct("<II")  # count, version (then 7 reserved uint64)
METADATA = struct.Struct("<IIQQ")  # sentinel, data type, size in bytes, data offset (then 5 reserved)
RECORD_BYTES = 64
SENTINEL = 0xDEADBEEF
STORAGE_VERSION = 2
#: BlobDataType (MILBlob/Blob/BlobDataType.hpp) -> filtergrid dtype; sub-byte types (8-13, as
#: coremltools 9 writes them) are packed back to back, low bits first.
BLOB_DTYPES = {1: "float16", 2: "float32", 3: "uint8", 4: "int8", 5: "bfloat16", 6: "int16", 7: "uint16",
               8: "int4", 9: "uint1", 10: "uint2", 11: "uint4", 12: "uint3", 13: "uint6", 14: "int32",
               15: "uint32", 16: "float8_e4m3fn", 17: "float8_e5m2"}


def looks_like_blob(head: bytes) -> bool:
    """Storage header of version 2 with at least one blob whose metadata starts with the sentinel."""
    if len(head) < 2 * RECORD_BYTES:
        return False
    count, version = HEADER.unpack_from(head)
    return version == STORAGE_VERSION and count > 0 and METADATA.unpack_from(head, RECORD_BYTES)[0] == SENTINEL


class BlobFile:
    """One mapped weight blob; :meth:`read` checks every declared extent before slicing."""

    def __init__(self, path: ModelPath):
        self._map = map_readonly(path)
        self.size = len(self._map)
        check_extent(0, RECORD_BYTES, self.size, "weight blob storage header")
        count, version = HEADER.unpack(window(self._map, 0, HEADER.size))
        if version != STORAGE_VERSION:
            raise CorruptFileError(f"weight blob has storage version {version}, not {STORAGE_VERSION}")
        if count * 2 * RECORD_BYTES > self.size:
            raise CorruptFileError(f"weight blob declares {count:,} blobs in {self.size:,} bytes")

    def read(self, offset: int, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
        """The blob whose metadata is at ``offset``, as ``shape`` elements of ``dtype`` (a copy)."""
        check_extent(offset, RECORD_BYTES, self.size, f"{what}: blob metadata")
        sentinel, blob_type, size, data = METADATA.unpack(window(self._map, offset, METADATA.size))
        if sentinel != SENTINEL:
            raise CorruptFileError(f"{what}: no blob metadata at byte {offset:,} (sentinel {sentinel:#x})")
        kind = BLOB_DTYPES.get(blob_type, f"blob data type {blob_type}")
        if kind != dtype:
            raise CorruptFileError(f"{what}: the program says {dtype}, the blob at byte {offset:,} holds {kind}")
        check_extent(data, size, self.size, f"{what}: blob data")
        packed = dtype in dtypes.PACKED
        need = dtypes.packed_nbytes(shape, dtype) if packed else dtypes.nbytes(shape, dtype)
        if size != need:
            raise CorruptFileError(f"{what}: {list(shape)} {dtype} needs {need:,} bytes, the blob holds {size:,}")
        stored = window(self._map, data, size)
        return dtypes.unpack(stored, dtype, shape, "lsb") if packed else np.array(dtypes.from_buffer(stored, dtype, shape))

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._map.close()
