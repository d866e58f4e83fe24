"""GGUF (llama.cpp): a vision tower's patch embedding, else the token embedding, dequantized by ``gguf``.

The header is walked here rather than by ``gguf.GGUFReader``: that reader trusts declared counts
(a metadata array claiming 2**60 elements past the end of the file loops without advancing) and
builds a NumPy view per array element. This walk bounds every count and length by the bytes left,
skips fixed-size arrays arithmetically, and stops at MAX_HEADER_BYTES. Tensor bytes are sliced from a
read-only map and decoded by ``gguf.quants.dequantize``, only the first rows when a heatmap needs no
more, so a 7 GB model costs kilobytes.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, UnreadableFeatureError
from ..safeio import array_at, check_extent, map_readonly
from .base import Probe, is_weight, lookup, require

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: Smallest encodings: a tensor info (name length, rank, type, offset), a key/value pair, an array item.
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8
MIN_KV_BYTES = 8 + 4 + 1
#: Metadata value types: fixed sizes of the scalars, and the two variable-length ones.
SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
UINT32, STRING, ARRAY = 4, 8, 9
#: Metadata that says what the file is and what wrote it, kept for ``producer()`` (type: value type).
WRITER_KEYS = {b"general.architecture": STRING, b"general.name": STRING, b"general.file_type": UINT32}
#: GGML types that are plain arrays, by their dtypes name; every other type is dequantized by gguf.
PLAIN = {"F32": "float32", "F16": "float16", "F64": "float64", "I8": "int8", "I16": "int16",
         "I32": "int32", "I64": "int64"}
#: Element type names shown in listings (block-quantized types keep their GGML name, e.g. Q8_0).
DTYPE_NAMES = {**PLAIN, "BF16": "bfloat16"}

PATCH_EMBEDDING = "v.patch_embd.weight"
TOKEN_EMBEDDING = "token_embd.weight"


def sniff(probe: Probe) -> bool:
    return probe.head.startswith(MAGIC)


def open(path: Path) -> GGUFFile:
    return GGUFFile(path)


def _gguf_version() -> str:
    """The installed gguf's version, for messages; imported here because importlib.metadata costs ~20 ms."""
    from importlib.metadata import version

    return version("gguf")


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]  # NumPy order: GGUF stores ne[0] (the innermost axis) first
    qtype: Any  # gguf.GGMLQuantizationType
    offset: int  # absolute, in the file


class _Header:
    """Little-endian GGUF fields read from the map, never past its end or MAX_HEADER_BYTES."""

    def __init__(self, buf: Any, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        check_extent(start, n, self.size, what)
        limits.check("MAX_HEADER_BYTES", start + n, f"GGUF header bytes up to {what}")
        self.pos += n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.bytes(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.bytes(8, what))[0]

    def bytes(self, n: int, what: str) -> builtins.bytes:
        """``n`` bytes by slicing, which a mapped file and a remote RangeFile both support."""
        start = self.take(n, what)
        return bytes(self.buf[start:self.pos])

    def string(self, what: str) -> builtins.bytes:
        return self.bytes(self.u64(what), what)

    def count(self, n: int, min_bytes: int, what: str) -> int:
        """A declared number of items that the bytes left can hold."""
        if n * min_bytes > self.size - self.pos:
            raise CorruptFileError(f"{what}: {n:,} declared, but only {self.size - self.pos:,} bytes remain")
        return n

    def skip_value(self, vtype: int, what: str, depth: int = 0) -> None:
        if vtype in SCALAR_BYTES:
            self.take(SCALAR_BYTES[vtype], what)
        elif vtype == STRING:
            self.take(self.u64(what), what)
        elif vtype == ARRAY:
            limits.check("MAX_NESTING", depth + 1, f"depth of nested arrays in {what}")
            item, n = self.u32(what), self.u64(what)
            if item in SCALAR_BYTES:
                self.take(n * SCALAR_BYTES[item], what)
                return
            for _ in range(self.count(n, 8, what)):  # a string or an array takes >= 8 bytes
                self.skip_value(item, what, depth + 1)
        else:
            raise CorruptFileError(f"{what} has unknown value type {vtype}")


class GGUFFile:
    """A GGUF file's tensors in file order; one first-layer candidate: the model's input layer."""

    def __init__(self, path: Path):
        self._gguf = require("gguf", "gguf")
        self._map = map_readonly(path)
        self._about: dict[bytes, Any] = {}
        try:
            self._tensors = self._index(_Header(self._map, len(self._map)))
        except BaseException:
            self._map.close()
            raise

    def _index(self, h: _Header) -> dict[str, _Tensor]:
        if bytes(self._map[:4]) != MAGIC:
            raise CorruptFileError("not a GGUF file (magic)")
        h.take(4, "magic")
        file_version = self._about[b"version"] = h.u32("version")
        if file_version & 0xFFFF == 0:
            raise UnreadableFeatureError("it is big-endian (only little-endian GGUF is supported)")
        if file_version not in VERSIONS:
            raise UnreadableFeatureError(f"its version {file_version} is not supported (only {VERSIONS})")
        n_tensors, n_kv = h.u64("tensor count"), h.u64("metadata count")
        limits.check("MAX_TENSORS", n_tensors, "tensors the GGUF header declares")
        h.count(n_kv, MIN_KV_BYTES, "metadata entries")
        h.count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensors")

        alignment = DEFAULT_ALIGNMENT
        for k in range(n_kv):
            key = h.string(f"metadata key {k}")
            what = f"metadata {key[:80]!r}"
            vtype = h.u32(what)
            if key == b"general.alignment" and vtype == UINT32:
                alignment = h.u32("general.alignment")
                if alignment == 0 or alignment & (alignment - 1):
                    raise CorruptFileError(f"general.alignment {alignment} is not a power of two")
            elif WRITER_KEYS.get(key) == vtype:
                self._about[key] = h.u32(what) if vtype == UINT32 else h.string(what).decode("utf-8", "replace")
            else:
                h.skip_value(vtype, what)

        infos = []
        for t in range(n_tensors):
            raw = h.string(f"tensor {t} name")
            rank = h.u32(f"tensor {t} rank")
            if rank > 8:
                raise CorruptFileError(f"tensor {t} has rank {rank}")
            ne = [h.u64(f"tensor {t} shape") for _ in range(rank)]
            infos.append((raw, ne, h.u32(f"tensor {t} type"), h.u64(f"tensor {t} offset")))
        data_start = -(-h.pos // alignment) * alignment
        tensors: dict[str, _Tensor] = {}
        for raw, ne, kind, offset in infos:
            tensor = self._tensor(raw, ne, kind, data_start + offset, h.size)
            if tensor.name in tensors:
                raise CorruptFileError(f"tensor name {tensor.name!r} appears twice")
            tensors[tensor.name] = tensor
        return tensors

    def _tensor(self, raw: bytes, ne: list[int], kind: int, offset: int, size: int) -> _Tensor:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError(f"tensor name {raw[:80]!r} is not UTF-8") from None
        try:
            qtype = self._gguf.GGMLQuantizationType(kind)
        except ValueError:
            raise CorruptFileError(f"tensor {name!r} has GGML type {kind}, unknown to gguf {_gguf_version()}") from None
        block, type_size = self._gguf.GGML_QUANT_SIZES[qtype]
        if block > 1 and (not ne or ne[0] % block):
            raise CorruptFileError(f"tensor {name!r}: shape {ne} is not a whole number of {qtype.name} blocks")
        check_extent(offset, math.prod(ne) // block * type_size, size, f"tensor {name!r}")
        return _Tensor(name, tuple(reversed(ne)), qtype, offset)

    # -- Reader -----------------------------------------------------------------------------

    def producer(self) -> Producer | None:
        """GGUF records no writer program: its version, the model's architecture, name and file type."""
        about = self._about
        file_type = about.get(b"general.file_type")
        if file_type is not None:
            names = {t.value: t.name for t in self._gguf.LlamaFileType}
            file_type = f"file type {names.get(file_type, file_type)}"
        return Producer.recorded(format_version=f"GGUF version {about[b'version']}", details=(
            f"architecture {about[b'general.architecture']}" if b"general.architecture" in about else "",
            f'model "{about[b"general.name"]}"' if b"general.name" in about else "", file_type))

    def _first_layer(self) -> str | None:
        """The model's input layer: a vision tower's patch embedding, else the token embedding."""
        if PATCH_EMBEDDING in self._tensors and len(self._tensors[PATCH_EMBEDDING].shape) == 4:
            return PATCH_EMBEDDING
        if TOKEN_EMBEDDING in self._tensors and len(self._tensors[TOKEN_EMBEDDING].shape) == 2:
            return TOKEN_EMBEDDING
        return next((t.name for t in self._tensors.values() if is_weight(t.name, t.shape)), None)

    def tensors(self) -> list[TensorInfo]:
        first = self._first_layer()
        roles = {PATCH_EMBEDDING: "patch embedding of the vision tower (a conv)",
                 TOKEN_EMBEDDING: "token embedding (vocab x dim), shown as a heatmap of the first rows"}
        infos = []
        for t in self._tensors.values():
            dtype = DTYPE_NAMES.get(t.qtype.name, t.qtype.name)
            layout = {2: "matrix", 4: "OIHW"}.get(len(t.shape), "auto")
            if t.name == first:
                role = roles.get(t.name, "first weight in file order")
            elif is_weight(t.name, t.shape):
                role = f"a deeper layer (the input layer is {first})"
            else:
                role = "not a weight (rank < 2, bias or normalization)"
            infos.append(TensorInfo(t.name, t.shape, dtype, layout, "CHW", role, t.name == first))
        return infos

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        t = lookup(self._tensors, name)
        shape = t.shape
        if rows is not None and len(shape) >= 2:
            shape = (min(rows, shape[0]), *shape[1:])
        dtypes.check_shape(shape)
        block, type_size = self._gguf.GGML_QUANT_SIZES[t.qtype]
        count = math.prod(shape) // block * type_size
        raw = array_at(self._map, np.uint8, count, t.offset)
        plain = PLAIN.get(t.qtype.name)
        if plain is not None:
            return raw.view(dtypes.STORAGE[plain]).reshape(shape).copy()
        blocks = raw.reshape(*shape[:-1], shape[-1] // block * type_size)
        try:
            with np.errstate(all="ignore"):  # scales are data: NaN/inf in a file decode to NaN/inf
                return self._gguf.quants.dequantize(blocks, t.qtype)  # float32
        except NotImplementedError:
            raise CorruptFileError(
                f"tensor {name!r} is {t.qtype.name}, which gguf {_gguf_version()} cannot dequantize") from None

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._map.close()
