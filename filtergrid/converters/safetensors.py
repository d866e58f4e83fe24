"""safetensors: an 8-byte header length, a JSON index, then raw little-endian tensors.

Spec: https://github.com/huggingface/safetensors#format. The index is validated as strictly as the
reference reader (offsets contiguous, inside the file, matching shape x dtype) before any tensor is
touched; then only the chosen tensor's bytes are read through an mmap.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, plain
from ..export import MARKER, bank_listing, parse_record
from ..firstlayer import order_by_evidence
from ..layout import CHANNELS_FIRST
from ..safeio import check_extent, map_readonly, window
from .base import Probe, listing_by_name, lookup, text_value

DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}


def sniff(probe: Probe) -> bool:
    """Header length that fits the file, followed by a JSON object."""
    head = probe.head
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= probe.size - 8 and head[8:9] == b"{"


def read_index(path: Path, size: int, f) -> tuple[int, dict[str, tuple[str, tuple[int, ...], int, int]], dict]:
    """(data start, {name: (dtype, shape, begin, end)}, metadata) after checking every entry."""
    (n,) = struct.unpack("<Q", f.read(8).ljust(8, b"\0"))
    check_extent(8, n, size, "header")
    limits.check("MAX_HEADER_BYTES", n, "bytes of the safetensors header")
    try:
        header = json.loads(f.read(n))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON, or a 5000-digit number
        detail = "a number of thousands of digits" if "integer string conversion" in str(e) else plain(e)
        raise CorruptFileError(f"header is not valid JSON ({detail})") from None
    if not isinstance(header, dict):
        raise CorruptFileError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    limits.check("MAX_TENSORS", len(header), "tensors in the safetensors header")
    data_size = size - 8 - n
    entries = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str) or entry["dtype"] not in DTYPES:
            raise CorruptFileError(f"tensor {name!r} has no known dtype ({str(entry)[:80]})")
        offsets, shape = entry.get("data_offsets"), entry.get("shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise CorruptFileError(f"tensor {name!r} has malformed data_offsets {str(offsets)[:80]}")
        if not (isinstance(shape, list) and all(type(d) is int for d in shape)):
            raise CorruptFileError(f"tensor {name!r} has malformed shape {str(shape)[:80]}")
        begin, end = offsets
        dtype = DTYPES[entry["dtype"]]
        shape = dtypes.check_shape(shape)
        check_extent(begin, end - begin, data_size, f"tensor {name!r}")
        if dtypes.nbytes(shape, dtype) != end - begin:
            raise CorruptFileError(
                f"tensor {name!r} declares {list(shape)} {dtype} but spans {end - begin:,} bytes")
        entries[name] = (dtype, shape, begin, end)
    spans = sorted((b, e, name) for name, (_, _, b, e) in entries.items())
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise CorruptFileError(f"tensors {first!r} and {second!r} overlap")
    return 8 + n, entries, metadata


def ordered_listing(entries: list[tuple[str, tuple[int, ...], str]], config: dict | None = None) -> list[TensorInfo]:
    """The listing of a safetensors store with its first layer inferred (it keeps no model order)."""
    return order_by_evidence(listing_by_name(entries, CHANNELS_FIRST, "first weight in natural name order"), config)


class SafetensorsReader:
    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("rb")
        size = path.stat().st_size
        self._start, self._entries, self.metadata = read_index(path, size, self._file)
        self._map = map_readonly(path)  # not empty: read_index refused a file without a header
        marker = self.metadata.get(MARKER) if isinstance(self.metadata, dict) else None
        self.bank_record = parse_record(marker) if isinstance(marker, str) else None

    def listing(self) -> list[TensorInfo]:
        """Tensors in natural name order, before inference (a Hugging Face folder infers across shards)."""
        return listing_by_name(self._entries_list(), CHANNELS_FIRST, "first weight in natural name order")

    def _entries_list(self) -> list[tuple[str, tuple[int, ...], str]]:
        return [(k, shape, dt) for k, (dt, shape, _, _) in self._entries.items()]

    def tensors(self) -> list[TensorInfo]:
        if self.bank_record is not None:
            return bank_listing(self._entries_list())
        return ordered_listing(self._entries_list())

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        dtype, shape, begin, _ = lookup(self._entries, name)
        if rows is not None and shape and rows < shape[0]:
            shape = (rows, *shape[1:])
        start = self._start + begin
        stored = dtypes.from_buffer(window(self._map, start, dtypes.nbytes(shape, dtype)), dtype, shape)
        return dtypes.native(stored, dtype)

    def producer(self) -> Producer | None:
        """safetensors records no writer; ``__metadata__["format"]`` names the framework's convention (pt, tf)."""
        convention = text_value(self.metadata, "format")
        return Producer.recorded(details=(f'__metadata__ format "{convention}"' if convention else "",))

    def close(self) -> None:
        self._map.close()
        self._file.close()


def open(path: Path) -> SafetensorsReader:  # noqa: A001 - the registry's verb
    return SafetensorsReader(path)
