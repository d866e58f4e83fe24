"""A protobuf message as spans over the file, for formats read with the wire walker (Core ML, Paddle).

:mod:`protowire` lists a message's fields; :class:`Message` groups them by field number and decodes
the few kinds of values readers ask for. Payloads stay in the mapped file until a reader slices
one; every span was checked by the walker against the message's bounds.
"""

from __future__ import annotations

import builtins
import mmap
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptFileError
from ..remote import RangeFile
from .protowire import I32, LEN, VARINT, iter_fields, packed_varints, part, signed, text


@dataclass
class Message:
    """The fields of one message in ``buf[start:end]``: number -> [(wire type, a, b)] in file order."""

    buf: mmap.mmap | RangeFile | bytes
    what: str
    fields: dict[int, list[tuple[int, int, int]]]

    @classmethod
    def parse(cls, buf, start: int, end: int, what: str) -> Message:
        fields: dict[int, list[tuple[int, int, int]]] = {}
        for number, wire, a, b in iter_fields(buf, start, end, what):
            fields.setdefault(number, []).append((wire, a, b))
        return cls(buf, what, fields)

    def has(self, number: int) -> bool:
        return number in self.fields

    def _spans(self, number: int, wire: int) -> list[tuple[int, int]]:
        spans = []
        for w, a, b in self.fields.get(number, ()):
            if w != wire:
                raise CorruptFileError(f"{part(self.what)} holds a value of the wrong kind at byte {a:,}")
            spans.append((a, b))
        return spans

    def messages(self, number: int, what: str) -> list[Message]:
        """Every occurrence of a repeated message field, in file order."""
        return [Message.parse(self.buf, a, b, f"{what}[{i}]")
                for i, (a, b) in enumerate(self._spans(number, LEN))]

    def message(self, number: int, what: str) -> Message | None:
        """A singular message field (the last occurrence, as protobuf keeps), or None when absent."""
        spans = self._spans(number, LEN)
        return Message.parse(self.buf, *spans[-1], what) if spans else None

    def int(self, number: int, default: int = 0) -> int:
        """A singular varint field as a signed int64 (int32/int64/enum/bool)."""
        spans = self._spans(number, VARINT)
        return signed(spans[-1][0]) if spans else default

    def ints(self, number: builtins.int) -> list[builtins.int]:
        """A repeated integer field, packed or not."""
        values: list[builtins.int] = []
        for wire, a, b in self.fields.get(number, ()):
            if wire == VARINT:
                values.append(signed(a))
            elif wire == LEN:
                values.extend(int(v) for v in packed_varints(self.buf, a, b, self.what))
            else:
                raise CorruptFileError(f"{part(self.what)} holds a value of the wrong kind where numbers belong")
        return values

    def string(self, number: builtins.int, default: str = "") -> str:
        spans = self._spans(number, LEN)
        return text(self.buf, *spans[-1], self.what) if spans else default

    def strings(self, number: builtins.int) -> list[str]:
        return [text(self.buf, a, b, self.what) for a, b in self._spans(number, LEN)]

    def span(self, number: builtins.int) -> tuple[builtins.int, builtins.int] | None:
        """Where a singular bytes field's payload lies in the file, or None."""
        spans = self._spans(number, LEN)
        return spans[-1] if spans else None

    def floats(self, number: builtins.int) -> np.ndarray:
        """A repeated float field (packed, or one fixed32 per element) as float32."""
        parts = []
        for wire, a, b in self.fields.get(number, ()):
            if wire not in (LEN, I32) or (b - a) % 4:
                raise CorruptFileError(f"{part(self.what)} holds a value of the wrong kind where float32 values belong")
            parts.append(np.frombuffer(self.buf[a:b], dtype="<f4"))
        return np.concatenate(parts) if parts else np.empty(0, np.float32)
