"""A pre-check of HDF5 global heap collections, for a libhdf5 bug that Python cannot stop.

HDF5 keeps variable-length strings (Keras' ``model_config``, ``layer_names``) in global heap
collections: ``GCOL``, version 1, 3 reserved bytes, the collection's size, then objects (index,
reference count, reserved, size, data padded to 8 bytes), the free space (index 0) last.
libhdf5 1.14, decoding a collection, loops forever on a free-space object of size 0 (its cursor
never advances): found by fuzzing Keras files, in C, where no signal handler runs. Collections are
found by their signature and walked here as libhdf5 walks them, before h5py lets it read one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from ..errors import CorruptFileError

SIGNATURE = b"GCOL\x01\x00\x00\x00"
HEADER = struct.Struct("<4sB3xQ")  # signature, version, reserved, collection size
OBJECT = struct.Struct("<HH4xQ")  # heap object index, reference count, reserved, object size
CHUNK = 1 << 20


def check_global_heaps(read_at: Callable[[int, int], bytes], size: int) -> None:
    """Refuse a collection whose free space is empty, or that runs past the file's ``size`` bytes
    (libhdf5 refuses that one too; here it keeps the walk inside the file).

    ``read_at(offset, n)`` returns up to ``n`` bytes of the file at ``offset``. Work is linear in
    the file's size: one scan for the signature, one walk over each collection's objects.
    """
    for offset in list(_signatures(read_at, size)):  # then in file order: forward reads only
        (_, _, length) = HEADER.unpack(read_at(offset, HEADER.size))
        if length < HEADER.size or offset + length > size:
            raise CorruptFileError(f"HDF5 global heap at byte {offset:,} declares {length:,} bytes, "
                                   f"past the end of the file ({size:,} bytes)")
        _walk(read_at(offset, length), offset)


def check_file(f: BinaryIO) -> None:
    """:func:`check_global_heaps` over a seekable binary file (a plain file or a stored zip member)."""
    size = f.seek(0, 2)

    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    check_global_heaps(read_at, size)
    f.seek(0)


def _signatures(read_at: Callable[[int, int], bytes], size: int):
    """Offsets of every collection signature, scanning in overlapping chunks."""
    start = 0
    while start < size:
        block = read_at(start, CHUNK + len(SIGNATURE) - 1)
        at = block.find(SIGNATURE)
        while at != -1:
            if start + at + HEADER.size <= size:
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
