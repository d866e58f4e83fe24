"""A bounded walker over the protobuf wire format, for reading huge messages without parsing them.

Plain protobuf parses a whole message into memory and refuses anything over 2 GiB. Walking the
wire format (tag, varint length, payload) over an ``mmap`` lists a message's fields as byte spans,
so a reader can skip gigabytes of tensor payload by its length and decode only the field it needs.
Every step checks what it reads against the bytes that exist and raises ``CorruptFileError`` naming
the message and field; nothing here trusts a length.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import CorruptFileError

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_FIXED_SIZE = {I64: 8, I32: 4}
#: A varint encodes at most 64 bits in 10 bytes.
MAX_VARINT_BYTES = 10


def read_varint(buf, pos: int, end: int, what: str) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    byte = buf[pos] if pos < end else -1
    if 0 <= byte < 0x80:  # the common one-byte case
        return byte, pos + 1
    value = shift = 0
    for i in range(pos, min(end, pos + MAX_VARINT_BYTES)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, i + 1
        shift += 7
    if end - pos >= MAX_VARINT_BYTES:
        raise CorruptFileError(f"{what}: varint at byte {pos:,} is longer than {MAX_VARINT_BYTES} bytes")
    raise CorruptFileError(f"{what}: file ends inside a varint at byte {pos:,}")


def signed(value: int) -> int:
    """A varint read as a two's-complement int64 (how protobuf stores negative int32/int64)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf, start: int, end: int, what: str) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, a, b)`` of each field of the message in ``buf[start:end]``.

    For a varint ``a`` is its value; for length-delimited and fixed-size fields ``buf[a:b]`` is the
    payload, which is not read. Groups (wire types 3/4, unused by ONNX) are refused.
    """
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # one-byte tags and lengths are the common case: no call
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end, what)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CorruptFileError(f"{what}: field number 0 at byte {pos:,}")
        if wire in (VARINT, LEN):  # a varint: the value, or the payload's length
            value = buf[pos] if pos < end else 0x80
            if value < 0x80:
                pos += 1
            else:
                value, pos = read_varint(buf, pos, end, what)
            if wire == VARINT:
                yield number, wire, value, pos
                continue
            length = value
        elif wire in _FIXED_SIZE:
            length = _FIXED_SIZE[wire]
        else:
            raise CorruptFileError(f"{what} field {number}: unsupported wire type {wire} at byte {pos:,}")
        if length > end - pos:
            raise CorruptFileError(
                f"{what} field {number}: {length:,} bytes at byte {pos:,} run past the end of "
                f"the message ({end - pos:,} bytes left)"
            )
        yield number, wire, pos, pos + length
        pos += length


def text(buf, start: int, end: int, what: str) -> str:
    """A UTF-8 string field (protobuf rejects invalid UTF-8, so do we)."""
    try:
        return buf[start:end].decode("utf-8")  # slicing an mmap or bytes copies just this field
    except UnicodeDecodeError:
        raise CorruptFileError(f"{what} is not valid UTF-8") from None


#: Bytes of a string read for display only (a producer name): the rest is never shown.
MAX_SHORT_TEXT_BYTES = 1024


def short_text(buf, start: int, end: int) -> str:
    """The first bytes of a UTF-8 string field, for display only (invalid bytes replaced, not refused)."""
    return bytes(buf[start:min(end, start + MAX_SHORT_TEXT_BYTES)]).decode("utf-8", "replace")


#: Bytes of packed varints decoded at a time (bounds the temporary arrays to ~32x this).
PACKED_CHUNK = 4 * 1024 * 1024


def packed_varints(buf, start: int, end: int, what: str) -> np.ndarray:
    """All varints packed in ``buf[start:end]`` as int64, decoded with NumPy instead of a Python loop."""
    parts = []
    pos = start
    while pos < end:
        stop = min(end, pos + PACKED_CHUNK)
        limit = min(end, stop + MAX_VARINT_BYTES)
        while stop < limit and buf[stop - 1] & 0x80:  # finish the varint the chunk cuts
            stop += 1
        parts.append(_decode_varints(bytes(buf[pos:stop]), what))
        pos = stop
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _decode_varints(chunk: bytes, what: str) -> np.ndarray:
    data = np.frombuffer(chunk, dtype=np.uint8)
    if data[-1] & 0x80:
        raise CorruptFileError(f"{what}: packed varints end inside a value")
    last = np.flatnonzero(data < 0x80)
    first = np.concatenate(([0], last[:-1] + 1))
    lengths = last - first + 1
    if int(lengths.max()) > MAX_VARINT_BYTES:
        raise CorruptFileError(f"{what}: a packed varint is longer than {MAX_VARINT_BYTES} bytes")
    position = np.arange(data.size) - np.repeat(first, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, first).view(np.int64)
