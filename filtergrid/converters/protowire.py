"""A bounded walker over the protobuf wire format, for reading huge messages without parsing them.

Plain protobuf parses a whole message into memory and refuses anything over 2 GiB. Walking the
wire format (tag, varint length, payload) over an ``mmap`` lists a message's fields as byte spans,
so a reader can skip gigabytes of tensor payload by its length and decode only the field it needs.
Every step checks what it reads against the bytes that exist and raises ``CorruptFileError`` saying
in a model user's words which part is damaged and at which byte; nothing here trusts a length.
"""

from __future__ import annotations

import re
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
        raise CorruptFileError(f"unreadable number in {part(what)} at byte {pos:,}")
    raise CorruptFileError(_cut_short(buf, what, pos, end))


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
            raise CorruptFileError(f"unreadable bytes in {part(what)} at byte {pos:,}")
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
            raise CorruptFileError(f"unreadable bytes in {part(what)} at byte {pos:,}")
        if length > end - pos:
            raise CorruptFileError(_cut_short(buf, what, pos, end, length))
        yield number, wire, pos, pos + length
        pos += length


def text(buf, start: int, end: int, what: str) -> str:
    """A UTF-8 string field (protobuf rejects invalid UTF-8, so do we)."""
    try:
        return buf[start:end].decode("utf-8")  # slicing an mmap or bytes copies just this field
    except UnicodeDecodeError:
        raise CorruptFileError(f"{part(what)} is not valid text (UTF-8)") from None


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
        raise CorruptFileError(f"{part(what)} ends in the middle of a number")
    last = np.flatnonzero(data < 0x80)
    first = np.concatenate(([0], last[:-1] + 1))
    lengths = last - first + 1
    if int(lengths.max()) > MAX_VARINT_BYTES:
        raise CorruptFileError(f"unreadable numbers in {part(what)}")
    position = np.arange(data.size) - np.repeat(first, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, first).view(np.int64)


def _cut_short(buf, what: str, pos: int, end: int, length: int | None = None) -> str:
    """A part whose bytes stop before it does: the file cut short when it is the file's end."""
    piece = f"a number at byte {pos:,}" if length is None else \
        f"a piece of {length:,} bytes at byte {pos:,}, {end - pos:,} bytes left"
    if end >= len(buf):
        return f"it ends in the middle of {part(what)} ({piece}, in a file of {len(buf):,} bytes)"
    return f"{part(what)} is cut short ({piece})"


#: Protobuf message names in the walkers' ``what`` as a model user knows the thing they hold.
_PART_NAMES = {
    "ModelProto": "the model", "GraphProto": "the graph", "NodeProto": "a node", "AttributeProto": "a node attribute",
    "FunctionProto": "a model function", "TensorProto": "a tensor", "SparseTensorProto": "a sparse tensor",
    "StringStringEntryProto": "an external-data entry", "ValueInfoProto": "an input or output",
    "NetParameter": "the network", "LayerParameter": "a layer", "V1LayerParameter": "a layer",
    "BlobProto": "a weight blob", "BlobShape": "a blob shape", "InnerProductParameter": "a fully connected layer",
    "ConvolutionParameter": "a convolution layer", "GraphDef": "the graph", "NodeDef": "a node",
    "FunctionDef": "a graph function", "OpDef": "a function signature", "SavedModel": "the SavedModel",
    "MetaGraphDef": "the meta graph", "SignatureDef": "a serving signature", "SavedObjectGraph": "the object graph",
    "BundleHeaderProto": "the checkpoint header", "BundleEntryProto": "a checkpoint entry",
    "ProgramDesc": "the program", "TensorDesc": "tensor description", "Core ML Model": "the model",
    "NeuralNetwork": "the network", "WeightParams": "weights", "mlProgram": "ML program", "Program": "the program",
    "Function": "a function", "Block": "a block", "innerProduct": "fully connected settings",
    "tensorType": "tensor type", "blobFileValue": "stored value", "immediateValue": "value",
}
_PART_NAME = re.compile(f"({'|'.join(sorted(map(re.escape, _PART_NAMES), key=len, reverse=True))})((?:\\.[a-z_]+)*)")
_INDEXED = re.compile(r"(\w+?)s?\[(\d+)\]")


def part(what: str) -> str:
    """A walker's ``what`` ("NeuralNetwork.layers[3]", "NodeProto.input") in a user's words
    ("the network layer 3", "a node input"): protobuf message names become what they describe."""
    words = _PART_NAME.sub(lambda m: _PART_NAMES[m.group(1)] + m.group(2).replace(".", " "), what)
    return _INDEXED.sub(r"\1 \2", words)
