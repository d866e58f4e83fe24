"""External data: a tensor's bytes in another file, which must be a regular file in the model's folder."""

from __future__ import annotations

import io
import os
import stat

from ...errors import CorruptFileError, UnsafeFileError
from ...remote import RangeFile, RemotePath
from ...safeio import ModelPath, check_extent, resolve_inside
from .model import StoredTensor


def read_external(folder: ModelPath, t: StoredTensor, need: int, wanted: int) -> bytearray:
    """The first ``wanted`` of the ``need`` bytes the tensor's external data must hold, extent checked."""
    info = t.external or {}
    location = info.get("location", "")
    offset, length = _extent(t, info)
    with _open_regular(resolve_inside(folder, location, "ONNX external data"), location, t.name) as f:
        size = f.seek(0, io.SEEK_END)
        if length is None:
            length = max(size - offset, 0)
        check_extent(offset, length, size, f"external data of {t.name!r} in {location!r}")
        if length != need:
            raise CorruptFileError(f"tensor {t.name!r} declares {list(t.dims)} = {need:,} bytes but its external "
                                   f"data has {length:,}")
        data = bytearray(wanted)
        f.seek(offset)
        if f.readinto(data) != wanted:
            raise CorruptFileError(f"external data file {location!r} ended while reading {t.name!r}")
    return data


def _extent(t: StoredTensor, info: dict[str, str]) -> tuple[int, int | None]:
    """``offset`` and ``length`` from the entries (length None: to the end of the file)."""
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise CorruptFileError(f"external data of {t.name!r} has a non-numeric offset or length") from None
    return offset, length


def _open_regular(path: ModelPath, location: str, tensor: str) -> io.BufferedReader | RangeFile:
    """Open without following a link swapped in after resolve_inside and without blocking on a FIFO
    (a file beside a remote model is read by ranges like the model)."""
    if isinstance(path, RemotePath):
        if not path.exists():
            raise CorruptFileError(f"external data file {location!r} of tensor {tensor!r} is missing")
        return path.open("rb")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CorruptFileError(f"external data file {location!r} of tensor {tensor!r} is missing") from None
    except OSError as e:
        raise UnsafeFileError(f"external data file {location!r} cannot be opened ({e.strerror})") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise UnsafeFileError(f"external data {location!r} is not a regular file")
    return f
