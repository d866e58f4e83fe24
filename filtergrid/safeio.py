"""File access rules for untrusted models: stay in the model's folder, check extents, write atomically."""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import CorruptFileError, UnsafeFileError


def resolve_inside(folder: str | os.PathLike, name: str, what: str = "file") -> Path:
    """``folder/name`` when it stays inside ``folder`` after resolving ``..`` and symlinks.

    ONNX external data, Hugging Face shard names and zip members are names an attacker writes;
    absolute paths, drive letters, ``..`` and links that leave the folder are refused.
    """
    if not name or "\x00" in name or os.path.isabs(name) or name.startswith(("\\", "/")) or ":" in name:
        raise UnsafeFileError(f"{what} name {name!r} is not a relative path inside the model's folder")
    parts = Path(name.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafeFileError(f"{what} name {name!r} climbs out of the model's folder")
    root = Path(folder).resolve()
    target = (root / Path(*parts)).resolve()
    if target != root and root not in target.parents:
        raise UnsafeFileError(f"{what} {name!r} resolves to {target}, outside the model's folder {root}")
    return target


def check_extent(offset: int, length: int, size: int, what: str) -> None:
    """A declared [offset, offset+length) must lie inside a file of ``size`` bytes."""
    if offset < 0 or length < 0 or offset + length > size:
        raise CorruptFileError(
            f"{what} spans bytes {offset:,}..{offset + length:,} but the file has {size:,} bytes"
        )


def map_readonly(path: str | os.PathLike) -> mmap.mmap:
    """The whole file mapped read-only: tensors are sliced out of it on demand, never all read."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise CorruptFileError("the file is empty")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes (the caller has bounded ``n``) or fail naming what was short."""
    data = f.read(n)
    if len(data) != n:
        raise CorruptFileError(f"file ends inside {what} ({len(data)} of {n} bytes)")
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash or Ctrl-C leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
