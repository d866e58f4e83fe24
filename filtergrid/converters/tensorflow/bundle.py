"""TensorFlow tensor bundles: a checkpoint's ``PREFIX.index`` table and its ``PREFIX.data-*`` shards.

The index maps each key (a variable's checkpoint key) to a ``BundleEntryProto``: dtype, shape,
shard, offset, size. The entry under the empty key is the ``BundleHeaderProto`` (shard count,
endianness). A tensor's bytes are read from its shard only when asked, after checking the declared
shape x dtype against the entry's size and the entry's extent against the shard's size.
"""

from __future__ import annotations

import contextlib
import math
import mmap
from dataclasses import dataclass

import numpy as np

from ... import dtypes, limits
from ...errors import CorruptFileError, UnreadableFeatureError
from ...remote import RangeFile
from ...safeio import ModelPath, check_extent, map_readonly, resolve_inside, window
from ..protowire import LEN, VARINT, iter_fields, read_varint
from . import protos, sstable

#: The key under which TF2 checkpoints store their object graph (a serialized string tensor).
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclass(frozen=True)
class Entry:
    """One tensor of the bundle: where its bytes are and what they hold."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool


class Bundle:
    """An open tensor bundle; shards are mapped on first use and closed with the bundle."""

    def __init__(self, index: ModelPath):
        self.index = index
        self.prefix = index.name.removesuffix(".index")
        size = index.stat().st_size
        limits.check("MAX_HEADER_BYTES", size, f"tensor bundle index {index.name}")
        data = index.read_bytes()
        self.shards = 1
        self.entries: dict[str, Entry] = {}
        for key, value in sstable.entries(data, f"index {index.name}"):
            if key:
                name = _key(key)
                self.entries[name] = _entry(name, value)
            else:
                self._header(value)
        for e in self.entries.values():
            if not 0 <= e.shard < self.shards:
                raise CorruptFileError(f"tensor {e.key!r} is in shard {e.shard} of {self.shards}")
        self._maps: dict[int, mmap.mmap | RangeFile] = {}

    def _header(self, value: bytes) -> None:
        span = (0, len(value))
        self.shards = protos.varint(value, span, 1, "bundle header", 1)
        if protos.varint(value, span, 2, "bundle header") != 0:
            raise CorruptFileError("the bundle is big-endian; filtergrid reads little-endian bundles")
        if not 1 <= self.shards <= limits.MAX_TENSORS:
            raise CorruptFileError(f"the bundle header declares {self.shards:,} shards")

    def shard_path(self, shard: int) -> ModelPath:
        name = f"{self.prefix}.data-{shard:05d}-of-{self.shards:05d}"
        return resolve_inside(self.index.parent, name, "checkpoint shard")

    def _shard(self, shard: int) -> mmap.mmap | RangeFile:
        if shard not in self._maps:
            path = self.shard_path(shard)
            if not path.is_file():
                raise CorruptFileError(f"the data shard {path.name} is missing next to {self.index.name}")
            self._maps[shard] = map_readonly(path)
        return self._maps[shard]

    def raw(self, e: Entry) -> memoryview | bytes:
        """The entry's bytes in its shard (checked to lie inside it)."""
        if e.size == 0:
            return memoryview(b"")
        data = self._shard(e.shard)
        check_extent(e.offset, e.size, len(data), f"tensor {e.key!r} in shard {e.shard}")
        return window(data, e.offset, e.size)  # a view on disk, one ranged read of a remote shard

    def read(self, e: Entry) -> np.ndarray:
        """A numeric tensor as stored (decoded to a NumPy dtype; bfloat16 and float8 to float32)."""
        if e.sliced:
            raise UnreadableFeatureError(f"tensor {e.key!r} is a partitioned variable (saved in slices), "
                                   f"which filtergrid does not reassemble")
        if e.dtype not in dtypes.STORAGE:
            raise UnreadableFeatureError(f"tensor {e.key!r} holds {e.dtype}, not numbers")
        dims = dtypes.check_fits(e.shape, e.dtype, e.size, f"tensor {e.key!r}")
        if math.prod(dims) * dtypes.itemsize(e.dtype) != e.size:
            raise CorruptFileError(f"tensor {e.key!r} declares {list(dims)} {e.dtype} in {e.size:,} bytes")
        return dtypes.native(dtypes.from_buffer(self.raw(e), e.dtype, dims), e.dtype)

    def read_string(self, e: Entry) -> bytes:
        """A scalar string tensor: ``varint length, 4-byte checksum, bytes`` (tensor_bundle.cc)."""
        if e.dtype != "string" or e.shape != ():
            raise CorruptFileError(f"tensor {e.key!r} is {e.dtype} {list(e.shape)}, not a string scalar")
        limits.check("MAX_HEADER_BYTES", e.size, f"string tensor {e.key!r}")
        data = bytes(self.raw(e))
        length, pos = read_varint(data, 0, len(data), f"string tensor {e.key!r}")
        if pos + 4 + length != len(data):
            raise CorruptFileError(f"string tensor {e.key!r} declares {length:,} bytes in {len(data):,}")
        return data[pos + 4:]

    def close(self) -> None:
        for m in self._maps.values():
            with contextlib.suppress(BufferError):
                m.close()
        self._maps.clear()


def _key(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError("a tensor name in the bundle index is not valid UTF-8") from None


def _entry(key: str, value: bytes) -> Entry:
    what = f"bundle entry {key[:200]!r}"
    dtype, shape_span, shard, offset, size, sliced = 0, None, 0, 0, 0, False
    for n, w, a, b in iter_fields(value, 0, len(value), what):
        if w == VARINT:
            if n == 1:
                dtype = a
            elif n == 3:
                shard = a
            elif n == 4:
                offset = a
            elif n == 5:
                size = a
        elif w == LEN and n == 2:
            shape_span = (a, b)
        elif w == LEN and n == 7:
            sliced = True
    shape = protos.shape(value, shape_span, what)
    if shape is None:
        raise CorruptFileError(f"{what} has an unknown shape")
    return Entry(key, protos.dtype_name(dtype), shape, shard, offset, size, sliced)


def find_index(path: ModelPath) -> ModelPath:
    """The ``.index`` file of a checkpoint given as the index, a data shard, or a folder.

    A folder names its checkpoint in a ``checkpoint`` text file (``model_checkpoint_path: "..."``)
    or holds exactly one ``.index`` file.
    """
    if path.is_file():
        if path.name.endswith(".index"):
            return path
        prefix, sep, _ = path.name.partition(".data-")
        if sep:
            return resolve_inside(path.parent, prefix + ".index", "checkpoint index")
        raise CorruptFileError(f"{path.name} is neither a checkpoint .index nor a .data shard")
    named = _named_in_state(path)
    if named:
        return named
    indexes = sorted((p for p in _listdir(path) if p.name.endswith(".index")), key=str)
    if len(indexes) != 1:
        raise CorruptFileError(f"the folder holds {len(indexes)} .index files and no 'checkpoint' file "
                               f"naming one; give the checkpoint's .index file")
    return indexes[0]


def _listdir(folder: ModelPath) -> list[ModelPath]:
    """The folder's entries, bounded by MAX_TENSORS (a folder of a million files is not a checkpoint)."""
    out = []
    for entry in folder.iterdir():  # a local folder or a remote prefix
        out.append(entry)
        if len(out) > limits.MAX_TENSORS:
            raise limits.exceeded("MAX_TENSORS", f"files in {folder.name}")
    return out


def _named_in_state(folder: ModelPath) -> ModelPath | None:
    """The index that a TF ``checkpoint`` state file names as the latest, when it exists."""
    state = folder / "checkpoint"
    if not state.is_file() or state.stat().st_size > 1024 * 1024:
        return None
    for line in state.read_text("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            # TF1 writes absolute paths of the machine that trained: only the last part is looked up
            prefix = value.strip().strip('"').replace("\\", "/").rsplit("/", 1)[-1]
            index = resolve_inside(folder, prefix + ".index", "checkpoint named in 'checkpoint'")
            return index if index.is_file() else None
    return None
