"""The sorted string table behind a TensorFlow tensor bundle's ``.index`` file (LevelDB's format).

Layout (tensorflow/core/lib/io/format.h): data blocks of prefix-compressed ``key -> value`` entries,
an index block whose values are the data blocks' handles, and a 48-byte footer (two block handles,
padding, an 8-byte magic). Each block ends with a restart array and a 5-byte trailer (compression
type, CRC). TensorFlow writes bundles uncompressed; a compressed block is refused. Every handle,
length and count is checked against the bytes that exist.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ... import limits
from ...errors import CorruptFileError, UnreadableFeatureError
from ..protowire import read_varint

MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
FOOTER_BYTES = 48
#: A block is followed by its compression type (1 byte) and a masked CRC32C (4 bytes).
TRAILER_BYTES = 5


def has_magic(tail: bytes) -> bool:
    """Whether the last bytes of a file are a table's footer magic."""
    return tail.endswith(MAGIC)


def entries(buf: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of the table in ``buf``, in key order (the order the writer sorted)."""
    if len(buf) < FOOTER_BYTES or not has_magic(buf):
        raise CorruptFileError(f"{what} is not a TensorFlow tensor bundle index (no table footer)")
    footer = len(buf) - FOOTER_BYTES
    _, pos = _handle(buf, footer, len(buf) - 8, what)  # the metaindex block: unused by bundles
    index, _ = _handle(buf, pos, len(buf) - 8, what)
    seen = 0
    for _, handle in _block(buf, index, footer, f"{what} index block"):
        block, _ = _handle(handle, 0, len(handle), f"{what} block handle")
        for key, value in _block(buf, block, footer, f"{what} data block"):
            seen += 1
            limits.check("MAX_TENSORS", seen, f"{what} entries")
            yield key, value


def _handle(buf: bytes, pos: int, end: int, what: str) -> tuple[tuple[int, int], int]:
    """A block handle (offset, size varints) at ``pos`` and the position after it."""
    offset, pos = read_varint(buf, pos, end, what)
    size, pos = read_varint(buf, pos, end, what)
    return (offset, size), pos


def _block(buf: bytes, handle: tuple[int, int], limit: int, what: str) -> Iterator[tuple[bytes, bytes]]:
    """The entries of one block, after checking its extent, trailer and restart array."""
    offset, size = handle
    if offset + size + TRAILER_BYTES > limit or size < 4:
        raise CorruptFileError(f"{what} spans bytes {offset:,}..{offset + size:,} outside the table "
                               f"of {limit:,} bytes")
    if buf[offset + size] != 0:
        raise UnreadableFeatureError(f"{what} is compressed (type {buf[offset + size]}); TensorFlow writes "
                               f"bundles uncompressed and filtergrid reads only those")
    end = offset + size
    restarts = struct.unpack_from("<I", buf, end - 4)[0]
    data_end = end - 4 - 4 * restarts
    if restarts < 1 or data_end < offset:
        raise CorruptFileError(f"{what} declares {restarts:,} restart points in {size:,} bytes")
    return _entries_of(buf, offset, data_end, what)


def _entries_of(buf: bytes, pos: int, end: int, what: str) -> Iterator[tuple[bytes, bytes]]:
    key = b""
    while pos < end:
        shared, pos = read_varint(buf, pos, end, what)
        unshared, pos = read_varint(buf, pos, end, what)
        length, pos = read_varint(buf, pos, end, what)
        if shared > len(key) or unshared + length > end - pos:
            raise CorruptFileError(f"{what}: entry at byte {pos:,} runs past its block")
        key = key[:shared] + buf[pos:pos + unshared]
        pos += unshared
        yield key, buf[pos:pos + length]
        pos += length
