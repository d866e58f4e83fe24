"""A pre-check of HDF5 global heap collections, for a libhdf5 bug that Python cannot stop.

HDF5 keeps variable-length strings (Keras' ``model_config``, ``layer_names``) in global heap
collections: ``GCOL``, version 1, 3 reserved bytes, the collection's size, then objects (index,
reference count, reserved, size, data padded to 8 bytes), the free space (index 0) last.
libhdf5 1.14, decoding a collection, loops forever on a free-space object of size 0 (its cursor
never advances): found by fuzzing Keras files, in C, where no signal handler runs.

libhdf5 decodes a collection only to read a variable-length value that points into it: an
attribute's value (or a dataset's fill value) whose type is variable-length. So before h5py opens
an object or reads its attributes, :class:`HeapGuard` parses that object's header (a few hundred
bytes), follows the heap IDs of its variable-length attributes and walks those collections as
libhdf5 would. Work is proportional to the headers and heaps of the objects filtergrid touches,
not to the file's size. A header it cannot vouch for (dense attribute storage, shared messages,
compound/array/reference types that may hide heap IDs, a damaged header) makes it fall back, once,
to checking every collection in the file by its signature (linear in the file's size).

The same header walk refuses a variable-length datatype with reserved kind, padding or charset
bits, which crashes libhdf5 as it reads the value (also found by fuzzing). Attributes the walk
does not parse (the fallback cases above) get only the collection scan, not this check.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..errors import CorruptFileError

ReadAt = Callable[[int, int], bytes]

SIGNATURE = b"GCOL\x01\x00\x00\x00"
HEADER = struct.Struct("<4sB3xQ")  # signature, version, reserved, collection size
OBJECT = struct.Struct("<HH4xQ")  # heap object index, reference count, reserved, object size
CHUNK = 1 << 20

ATTRIBUTE, ATTRIBUTE_INFO, CONTINUATION, DATATYPE, FILL_VALUE = 0x0C, 0x15, 0x10, 0x03, 0x05
VLEN, COMPOUND, REFERENCE, ARRAY = 9, 6, 7, 10
#: Datatype classes that may hold heap IDs somewhere inside them (not parsed: fall back to the scan).
HIDES_HEAP_IDS = {COMPOUND, REFERENCE, ARRAY}
#: Most header chunks (the first plus continuations) one object may have; real ones have 1-3.
MAX_HEADER_CHUNKS = 64
#: Most bytes of one header chunk read at once; bigger chunks mean a damaged header (scan instead).
MAX_HEADER_CHUNK = 1 << 20


class Unparsed(Exception):
    """A header this module does not vouch for; the guard then checks every collection."""


class HeapGuard:
    """Checks the global heap collections that objects' variable-length values point into.

    ``read_at(offset, n)`` reads the file; ``base`` is the HDF5 base address (the user block's
    size), ``offset_size`` / ``length_size`` the superblock's sizes of addresses and lengths.
    """

    def __init__(self, read_at: ReadAt, size: int, *, base: int = 0, offset_size: int = 8, length_size: int = 8):
        self._read_at, self._size, self._base = read_at, size, base
        self._offset_size, self._length_size = offset_size, length_size
        self._objects: set[int] = set()
        self._heaps: set[int] = set()
        self.scanned = False

    def check_object(self, address: int) -> None:
        """Refuse the object at ``address`` (relative to the base) if a heap it points into is malformed."""
        if self.scanned or address in self._objects:
            return
        self._objects.add(address)
        try:
            for heap in self._heap_addresses(address):
                self._check_heap(heap)
        except Unparsed:
            self.scanned = True
            check_global_heaps(self._read_at, self._size)

    def _check_heap(self, address: int) -> None:
        offset = self._base + address
        if offset in self._heaps:
            return
        self._heaps.add(offset)
        if self._read_at(offset, len(SIGNATURE)) == SIGNATURE:  # anything else: libhdf5 refuses it
            check_collection(self._read_at, offset, self._size)

    def _heap_addresses(self, address: int) -> Iterator[int]:
        """Collection addresses of every heap ID the object's header holds (its attributes' values)."""
        messages = list(self._messages(address))
        datatype = next((body for kind, body in messages if kind == DATATYPE), None)
        has_fill = any(kind == FILL_VALUE for kind, _ in messages)
        if datatype is not None and has_fill and self._heap_ids_of_type(datatype):
            raise Unparsed("variable-length fill value")
        for kind, body in messages:
            if kind == ATTRIBUTE:
                yield from self._attribute_heaps(body)
            elif kind == ATTRIBUTE_INFO and self._dense_attributes(body):
                raise Unparsed("attributes in a fractal heap")

    def _messages(self, address: int) -> Iterator[tuple[int, bytes]]:
        """(type, body) of every message of the object header at ``address``, continuations included."""
        offset = self._base + address
        head = self._read_at(offset, 16)
        if head[:5] == b"OHDR\x02" and len(head) >= 6:
            flags = head[5]
            start = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
            width = 1 << (flags & 3)
            length = int.from_bytes(self._read_at(offset + start, width), "little")
            version, prefix = 2, 4 + (2 if flags & 0x04 else 0)  # type, size, flags[, creation order]
            chunks = [(offset + start + width, length)]
        elif len(head) == 16 and head[0] == 1:
            version, prefix = 1, 8  # type, size, flags, 3 reserved
            chunks = [(offset + 16, struct.unpack_from("<I", head, 8)[0])]
        else:
            raise Unparsed("object header signature or version")
        for _ in range(MAX_HEADER_CHUNKS):
            if not chunks:
                return
            for kind, body in self._chunk(*chunks.pop(0), version, prefix):
                if kind == CONTINUATION:
                    chunks.append(self._continuation(body, version))
                else:
                    yield kind, body
        raise Unparsed("too many header continuations")

    def _continuation(self, body: bytes, version: int) -> tuple[int, int]:
        o = self._offset_size
        if len(body) < o + self._length_size:
            raise Unparsed("short continuation message")
        where = self._base + int.from_bytes(body[:o], "little")
        length = int.from_bytes(body[o:o + self._length_size], "little")
        if version == 2:  # "OCHK" signature first, checksum last
            if self._read_at(where, 4) != b"OCHK":
                raise Unparsed("continuation chunk signature")
            return where + 4, length - 8
        return where, length

    def _chunk(self, where: int, length: int, version: int, prefix: int) -> Iterator[tuple[int, bytes]]:
        if not 0 <= length <= MAX_HEADER_CHUNK or where + length > self._size:
            raise Unparsed("header chunk outside the file")
        data = self._read_at(where, length)
        p = 0
        while p + prefix <= len(data):
            kind, size, flags = struct.unpack_from("<HHB" if version == 1 else "<BHB", data, p)
            p += prefix
            if p + size > len(data):
                raise Unparsed("message past its chunk")
            if flags & 0x02 and kind in (ATTRIBUTE, DATATYPE):
                raise Unparsed("shared message")
            yield kind, data[p:p + size]
            p += size

    def _dense_attributes(self, body: bytes) -> bool:
        if len(body) < 2:
            raise Unparsed("short attribute info message")
        start = 2 + (2 if body[1] & 0x01 else 0)
        heap = body[start:start + self._offset_size]
        return heap != b"\xff" * self._offset_size

    def _attribute_heaps(self, body: bytes) -> Iterator[int]:
        """Heap collections the attribute's value points into (none unless its type is variable-length)."""
        if len(body) < 8:
            raise Unparsed("short attribute message")
        version, flags = body[0], body[1]
        name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
        if version == 1:
            pad: Callable[[int], int] = lambda n: (n + 7) // 8 * 8  # noqa: E731 - fields padded to 8
            p = 8
        elif version in (2, 3):
            if flags & 0x03:
                raise Unparsed("shared attribute datatype or dataspace")
            pad, p = (lambda n: n), 8 + (version == 3)
        else:
            raise Unparsed("attribute message version")
        p += pad(name_size)
        datatype, p = body[p:p + type_size], p + pad(type_size)
        space, p = body[p:p + space_size], p + pad(space_size)
        element = self._heap_ids_of_type(datatype)
        if element:
            yield from self._heap_ids(body[p:], self._elements(space), element)

    def _heap_ids_of_type(self, datatype: bytes) -> int:
        """Size of one stored value if ``datatype`` is a variable-length sequence or string of plain
        values (each is a heap ID), 0 if it holds no heap IDs; Unparsed if it may hide some."""
        if len(datatype) < 8:
            raise Unparsed("short datatype")
        kind = datatype[0] & 0x0F
        if kind in HIDES_HEAP_IDS:
            raise Unparsed("datatype that may hold heap IDs")
        if kind != VLEN:
            return 0
        sequence_or_string, padding, charset = datatype[1] & 0x03, datatype[1] >> 2 & 0x03, datatype[1] >> 4
        if sequence_or_string > 1 or padding > 2 or charset > 1:  # reserved values crash libhdf5 (fuzzing)
            raise CorruptFileError("a variable-length type has reserved bits set")
        if sequence_or_string == 0:  # a sequence: its base type must be plain too
            base = datatype[8:]
            if len(base) < 1 or base[0] & 0x0F in HIDES_HEAP_IDS | {VLEN}:
                raise Unparsed("nested variable-length type")
        return 4 + self._offset_size + 4

    def _elements(self, space: bytes) -> int:
        """Number of values a dataspace message declares."""
        if len(space) < 4 or space[0] not in (1, 2):
            raise Unparsed("dataspace message")
        rank, version = space[1], space[0]
        if version == 2 and space[3] == 2:  # null dataspace
            return 0
        start = 8 if version == 1 else 4
        dims = space[start:start + rank * self._length_size]
        if len(dims) < rank * self._length_size:
            raise Unparsed("short dataspace")
        n = self._length_size
        return math.prod(int.from_bytes(dims[i:i + n], "little") for i in range(0, len(dims), n))

    def _heap_ids(self, data: bytes, count: int, element: int) -> Iterator[int]:
        if count * element > len(data):
            raise Unparsed("attribute value shorter than its dataspace")
        o = self._offset_size
        undefined = (1 << 8 * o) - 1
        for p in range(0, count * element, element):
            address = int.from_bytes(data[p + 4:p + 4 + o], "little")
            if address not in (0, undefined):
                yield address


def check_collection(read_at: ReadAt, offset: int, size: int) -> None:
    """Refuse the collection at ``offset`` if its free space is empty, or if it runs past the file's
    ``size`` bytes (libhdf5 refuses that one too; here it keeps the walk inside the file)."""
    (_, _, length) = HEADER.unpack(read_at(offset, HEADER.size))
    if length < HEADER.size or offset + length > size:
        raise CorruptFileError(f"HDF5 global heap at byte {offset:,} declares {length:,} bytes, "
                               f"past the end of the file ({size:,} bytes)")
    _walk(read_at(offset, length), offset)


def check_global_heaps(read_at: ReadAt, size: int) -> None:
    """:func:`check_collection` for every collection signature in the file: one scan, then each walk."""
    for offset in list(_signatures(read_at, size)):  # then in file order: forward reads only
        if offset + HEADER.size <= size:
            check_collection(read_at, offset, size)


def reader(f: BinaryIO) -> tuple[ReadAt, int]:
    """``(read_at, size)`` over a seekable binary file (a plain file or a zip member)."""
    size = f.seek(0, 2)

    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(max(0, min(n, size - offset)))

    return read_at, size


def _signatures(read_at: ReadAt, size: int) -> Iterator[int]:
    """Offsets of every collection signature, scanning in overlapping chunks."""
    start = 0
    while start < size:
        block = read_at(start, CHUNK + len(SIGNATURE) - 1)
        at = block.find(SIGNATURE)
        while at != -1:
            yield start + at
            at = block.find(SIGNATURE, at + 1)
        start += CHUNK


def _walk(collection: bytes, offset: int) -> None:
    """Follow the objects as libhdf5 does; the free-space object must be last and not empty."""
    p, end = HEADER.size, len(collection)
    while p + OBJECT.size <= end:
        index, _, length = OBJECT.unpack_from(collection, p)
        if index == 0:
            if length == 0 or p + length < end:
                raise CorruptFileError(f"HDF5 global heap at byte {offset:,} has a malformed free-space "
                                       f"object at byte {offset + p:,} (libhdf5 would not stop reading it)")
            return
        p += OBJECT.size + (length + 7) // 8 * 8
