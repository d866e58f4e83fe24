"""File access rules for untrusted models: stay in the model's folder, check extents, write atomically."""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, TypeAlias

import numpy as np

from .errors import CorruptFileError, UnsafeFileError, UsageError, plain
from .remote import RangeFile, RemotePath, is_url

ModelPath: TypeAlias = "Path | RemotePath"  # what a reader is given: a local file/folder or one in a remote store


#: Longest file name component file systems allow (ext4, APFS, NTFS: 255).
MAX_NAME_BYTES = 255


def resolve_inside(folder: str | os.PathLike | RemotePath, name: str, what: str = "file") -> Path | RemotePath:
    """``folder/name`` when it stays inside ``folder`` after resolving ``..`` and symlinks.

    ONNX external data, Hugging Face shard names and zip members are names an attacker writes;
    absolute paths, drive letters, ``..`` and links that leave the folder are refused.
    """
    if not name or "\x00" in name or os.path.isabs(name) or name.startswith(("\\", "/")) or ":" in name:
        raise UnsafeFileError(f"{what} name {name!r} is not a relative path inside the model's folder")
    parts = Path(name.replace("\\", "/")).parts
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts):
        raise CorruptFileError(f"{what} name {name[:80]!r}... has a part longer than {MAX_NAME_BYTES} bytes, "
                               "more than any file system allows")
    if ".." in parts:
        raise UnsafeFileError(f"{what} name {name!r} climbs out of the model's folder")
    if isinstance(folder, RemotePath):  # no links to resolve; escapes a server would decode are refused
        if any(c in name for c in "%?#"):
            raise UnsafeFileError(f"{what} name {name!r} has URL escapes that could leave the model's folder")
        return folder / "/".join(parts)
    root = Path(folder).resolve()
    target = (root / Path(*parts)).resolve()
    if target != root and root not in target.parents:
        raise UnsafeFileError(f"{what} {name!r} resolves to {target}, outside the model's folder {root}")
    return target


def refuse_overwriting_input(output: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """An output that is one of the inputs (after resolving links) would replace the model: refused."""
    out = Path(output)
    if not out.exists():
        return
    for model in inputs:
        with contextlib.suppress(OSError):
            if Path(model).exists() and os.path.samefile(out, model):
                raise UsageError(f"the output {out} is the input model {model}; choose another output")


def check_extent(offset: int, length: int, size: int, what: str) -> None:
    """A declared [offset, offset+length) must lie inside a file of ``size`` bytes."""
    if offset < 0 or length < 0 or offset + length > size:
        raise CorruptFileError(
            f"{what} spans bytes {offset:,}..{offset + length:,} but the file has {size:,} bytes"
        )


def map_readonly(path: str | os.PathLike | RemotePath) -> mmap.mmap | RangeFile:
    """The whole file mapped read-only: tensors are sliced out of it on demand, never all read.

    A remote file is its :class:`~filtergrid.remote.RangeFile`, which slices the same way; read
    arrays out of either with :func:`array_at`.
    """
    if isinstance(path, RemotePath):
        if path.stat().st_size == 0:
            raise CorruptFileError("the file is empty")
        return path.open("rb")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise CorruptFileError("the file is empty")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def map_whole(path: Path | RemotePath) -> mmap.mmap:
    """The whole file as a map, for formats whose index is spread through it (a flatbuffer): a
    remote file is read once, all of it, into an anonymous map of its size."""
    if not isinstance(path, RemotePath):
        return map_readonly(path)  # type: ignore[return-value]
    data = path.read_bytes()
    if not data:
        raise CorruptFileError("the file is empty")
    copy = mmap.mmap(-1, len(data))
    copy.write(data)
    return copy


def window(buffer: mmap.mmap | RangeFile, offset: int, length: int) -> memoryview | bytes:
    """``length`` bytes at ``offset``: a view of a mapped file, one ranged read of a remote one."""
    if isinstance(buffer, RangeFile):
        return buffer.pread(offset, length)
    return memoryview(buffer)[offset: offset + length]


def array_at(buffer: mmap.mmap | RangeFile, dtype, count: int, offset: int) -> np.ndarray:
    """``count`` items of ``dtype`` at ``offset`` of a mapped or remote file."""
    return np.frombuffer(window(buffer, offset, count * np.dtype(dtype).itemsize), dtype, count=count)


class MappedFile:
    """A read-only file over :func:`map_readonly` that can hand out views of the map instead of copies
    (:meth:`view`): an unpickler walks a pickle that holds its arrays inline (Paddle ``.pdparams``,
    joblib) and only the array that is shown is ever read."""

    #: Payloads of this many bytes or more are worth a view (a remote file's are ranged reads anyway).
    VIEW_BYTES = 1 << 20
    LINE_CHUNK = 4096

    def __init__(self, path: str | os.PathLike | RemotePath):
        self._buf = map_readonly(path)
        self._size, self._pos = len(self._buf), 0

    def view(self, n: int) -> memoryview | bytes:
        """The next ``n`` bytes (fewer at the end) as a view of the mapped file."""
        n = max(0, min(n, self._size - self._pos))
        data = window(self._buf, self._pos, n)
        self._pos += n
        return data

    def read(self, n: int = -1) -> bytes:
        return bytes(self.view(self._size - self._pos if n < 0 else n))

    def readline(self, limit: int = -1) -> bytes:
        """Up to and including the next newline (at most ``limit`` bytes), read a chunk at a time."""
        limit = self._size - self._pos if limit < 0 else min(limit, self._size - self._pos)
        line = b""
        while len(line) < limit:
            chunk = bytes(window(self._buf, self._pos + len(line), min(self.LINE_CHUNK, limit - len(line))))
            cut = chunk.find(b"\n")
            line += chunk if cut < 0 else chunk[:cut + 1]
            if cut >= 0:
                break
        self._pos += len(line)
        return line

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(self, *exc) -> None:
        pass  # the map stays open while arrays that view it are alive; it closes with them


def open_zip(path: Path | RemotePath) -> zipfile.ZipFile:
    """A zip archive on disk, or a remote one read by ranges (central directory, then members)."""
    return zipfile.ZipFile(path.open("rb") if isinstance(path, RemotePath) else path)


def model_path(path: str | os.PathLike | RemotePath) -> Path | RemotePath:
    """A local path, or a :class:`~filtergrid.remote.RemotePath` for ``http(s)://``, ``s3://``, ..."""
    if isinstance(path, RemotePath):
        return path
    return RemotePath(str(path)) if is_url(path) else Path(path)


def read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes (the caller has bounded ``n``) or fail naming what was short."""
    data = f.read(n)
    if len(data) != n:
        raise CorruptFileError(f"file ends inside {what} ({len(data)} of {n} bytes)")
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
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


_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(name: str, what: str = "archive member") -> None:
    """Refuse an archive member name that would land outside the archive's folder if extracted.

    filtergrid never extracts, but a name like ``../../x``, ``/etc/x`` or ``C:/x`` marks a hostile
    archive. Other colons are fine: Keras/TF variable names (``kernel:0``) become npz keys.
    """
    parts = name.replace("\\", "/").split("/")
    if not name or "\x00" in name or name.startswith(("/", "\\")) or ".." in parts or _DRIVE.match(name):
        raise UnsafeFileError(f"{what} name {name!r} points outside the archive")


#: What Python's zipfile raises on a damaged archive (bad CRC, headers that disagree, unknown
#: compression or version, encryption, truncated data, undecodable names, offsets past the file).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError,
              UnicodeDecodeError, ValueError, zlib.error)


@contextlib.contextmanager
def zip_errors(what: str) -> Iterator[None]:
    """Turn zipfile's own exceptions inside the block into one-line CorruptFileErrors."""
    try:
        yield
    except ZIP_ERRORS as e:
        raise CorruptFileError(f"{what}: damaged zip archive ({plain(e)})") from None
