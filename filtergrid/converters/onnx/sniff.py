"""Detection: ONNX has no magic bytes, so the start of the file must parse as a ModelProto.

A file is ONNX when it starts with ``ir_version`` and the fields that follow, up to the start of
the graph, are ModelProto fields whose contents look right (text is UTF-8, the graph's first
fields are GraphProto fields whose payloads start plausibly): at most 2 in 10,000 random heads
pass (tested).
"""

from __future__ import annotations

import codecs

from ...errors import CorruptFileError
from ..base import Probe
from ..protowire import LEN, VARINT, iter_fields, read_varint, text

#: ModelProto field number -> wire type; anything else means "not ONNX".
_MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN,
                 20: LEN, 25: LEN, 26: LEN}
_TEXT_FIELDS = (2, 3, 4, 6)
#: Fields some writers put before the graph (declaration order): opset_import, metadata_props.
_SMALL_MESSAGES = {8: {1: LEN, 2: VARINT}, 14: {1: LEN, 2: LEN}}
#: GraphProto fields (all length-delimited) -> the tags their payload may start with (None: text).
_NODE_TAGS = frozenset(range(0x0A, 0x53, 8))
_TENSOR_TAGS = frozenset({0x08, 0x0A, 0x10, 0x1A, 0x22, 0x25, 0x2A, 0x28, 0x32, 0x3A, 0x38, 0x42, 0x4A,
                          0x52, 0x51, 0x5A, 0x58, 0x62, 0x6A, 0x70, 0x82})
_VALUE_INFO_TAGS = frozenset({0x0A, 0x12, 0x1A, 0x22})
_GRAPH_FIELDS: dict[int, frozenset[int] | None] = {
    1: _NODE_TAGS, 2: None, 5: _TENSOR_TAGS, 10: None, 11: _VALUE_INFO_TAGS, 12: _VALUE_INFO_TAGS,
    13: _VALUE_INFO_TAGS, 14: frozenset({0x0A, 0x12}), 15: frozenset({0x0A, 0x12, 0x18, 0x1A}),
    16: frozenset({0x0A, 0x12})}
#: Highest ONNX IR version accepted while sniffing (IR 11 in 2025; room for growth).
_MAX_IR_VERSION = 32


def sniff(probe: Probe) -> bool:
    """True when the file starts with ``ir_version`` and its fields read as a ModelProto up to the graph."""
    head = probe.head
    if probe.is_dir or len(head) < 4 or head[0] != 0x08:
        return False
    try:
        return _reads_as_model(head, probe.size)
    except CorruptFileError:
        return False


def _reads_as_model(head: bytes, size: int) -> bool:
    ir_version, pos = read_varint(head, 1, len(head), "ir_version")
    if not 1 <= ir_version <= _MAX_IR_VERSION:
        return False
    while pos < len(head):
        key, pos = read_varint(head, pos, len(head), "ModelProto")
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire or number == 1:
            return False
        value, pos = read_varint(head, pos, len(head), "ModelProto")
        if wire == VARINT:
            continue
        if value > size - pos:
            return False
        if number == 7:
            return _graph_start_ok(head, pos, pos + value)
        if not _field_before_graph_ok(head, number, pos, pos + value):
            return False
        if pos + value > len(head):  # a long doc_string: what was visible was text
            return True
        pos += value
    return False


def _field_before_graph_ok(head: bytes, number: int, start: int, end: int) -> bool:
    """A text field, or a small message writers put before the graph, that reads as such."""
    if number in _TEXT_FIELDS:
        if end > len(head):  # only its start is visible: it must be UTF-8 text so far
            return _is_text_start(head[start:])
        text(head, start, end, "ModelProto string")
        return True
    if number not in _SMALL_MESSAGES or end > len(head):
        return False  # the rest follow the graph in files that writers make
    for field_number, field_wire, a, b in iter_fields(head, start, end, "ModelProto"):
        if _SMALL_MESSAGES[number].get(field_number) != field_wire:
            return False
        if field_wire == LEN:
            text(head, a, b, "ModelProto entry")
    return True


def _graph_start_ok(head: bytes, start: int, end: int) -> bool:
    """The visible start of the graph reads as GraphProto fields whose payloads start plausibly."""
    pos, checked = start, 0
    while pos < min(end, len(head)):
        key, pos = read_varint(head, pos, len(head), "GraphProto")
        if key & 7 != LEN or (key >> 3) not in _GRAPH_FIELDS:
            return False
        length, pos = read_varint(head, pos, len(head), "GraphProto")
        if length > end - pos or not _payload_start_ok(_GRAPH_FIELDS[key >> 3], head[pos:min(pos + length, len(head))]):
            return False
        checked += 1
        pos += length
    return checked >= 2 or checked == 1 and (pos == end or pos > len(head))


def _payload_start_ok(tags: frozenset[int] | None, visible: bytes) -> bool:
    """Text that decodes, or a message whose first tag is one its type has."""
    if tags is None:
        return _is_text_start(visible)
    return not visible or visible[0] in tags


def _is_text_start(data: bytes) -> bool:
    """True when ``data`` is UTF-8, allowing a character cut at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True
