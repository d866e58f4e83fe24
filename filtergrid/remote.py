"""Models where they live: ``http(s)://`` (standard library) and ``s3://``, ``gs://``, ``az://``,
``hf://`` (fsspec extras), read by byte ranges.

Every reader reaches a file through :class:`RemotePath`, a small slice of the :class:`pathlib.Path`
API (``open``, ``stat``, ``parent``, ``/``, ``is_dir``, ``iterdir``). Its ``open("rb")`` is one
seekable :class:`RangeFile` with a small block cache that counts requests and bytes, so a
safetensors header and one tensor cost a few range requests, not a download. Credentials come from
each ecosystem's usual places (``AWS_*``, profiles, ``HF_TOKEN``); shown URLs drop user info and
query strings (presigned signatures).
"""

from __future__ import annotations

import base64
import fnmatch
import io
import posixpath
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from . import limits
from .errors import CorruptFileError, FiltergridError, MissingExtraError

#: Schemes read by the standard library, and the fsspec extra that brings each other one.
STDLIB_SCHEMES = ("http", "https")
EXTRA_FOR_SCHEME = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
                    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "hf": ("huggingface_hub", "hf")}
#: Bytes fetched per cached block: a header walk touches a few blocks, a tensor is one request.
BLOCK_BYTES = 128 * 1024
#: Blocks kept per open file (LRU).
CACHED_BLOCKS = 32
#: Reads of more blocks than this go to the server as one range, uncached.
DIRECT_READ_BLOCKS = 4
RETRIES = 3
BACKOFF_SECONDS = 0.25


def is_url(text: object) -> bool:
    """``scheme://...`` with a scheme filtergrid can read (a Windows drive ``C:\\`` is no URL)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and (scheme in STDLIB_SCHEMES or scheme in EXTRA_FOR_SCHEME)


def redact(url: str) -> str:
    """The URL as shown to people and written to reports: no user info, no query, no fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class Transfer:
    """Requests and bytes fetched for one model (all its files share one)."""

    requests: int = 0
    bytes: int = 0

    def count(self, n: int) -> None:
        self.requests += 1
        self.bytes += n
        limits.check("MAX_REMOTE_BYTES", self.bytes, "bytes fetched for this model")

    def describe(self) -> str:
        return f"fetched {self.bytes:,} bytes in {self.requests} range request{'s' * (self.requests != 1)}"


class Transport(Protocol):
    """How bytes of one store are reached; ``key`` is the full URL."""

    def size(self, key: str) -> int: ...
    def fetch(self, key: str, start: int, end: int) -> bytes: ...
    def is_dir(self, key: str) -> bool: ...
    def listdir(self, key: str) -> list[str]: ...


class HttpTransport:
    """HTTP(S) with ``Range`` requests, timeouts and retries with backoff; the standard library only."""

    def size(self, key: str) -> int:
        with self._open(key, method="HEAD") as response:
            length = response.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise FiltergridError(f"{redact(key)}: the server does not say the file's size (no Content-Length)")
        return int(length)

    def fetch(self, key: str, start: int, end: int) -> bytes:
        want = end - start
        with self._open(key, headers={"Range": f"bytes={start}-{end - 1}"}) as response:
            if response.status != 206 and not (start == 0 and response.status == 200):
                raise FiltergridError(f"{redact(key)}: the server ignores byte ranges (HTTP {response.status})")
            data = response.read(want + 1)  # never more than asked, even when the server sends more
        if len(data) != want:
            raise CorruptFileError(f"{redact(key)}: asked for {want:,} bytes at {start:,}, the server sent "
                                   f"{'more' if len(data) > want else len(data)}")
        return data

    def is_dir(self, key: str) -> bool:
        return key.endswith("/")

    def listdir(self, key: str) -> list[str]:
        raise FiltergridError(f"{redact(key)}: an HTTP server lists no folders; name the files")

    def _open(self, key: str, method: str = "GET", headers: dict[str, str] | None = None):
        parts = urllib.parse.urlsplit(key)
        headers = dict(headers or {})
        if parts.username is not None:  # user:password@host, sent as HTTP Basic like curl does
            secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        quoted = parts._replace(netloc=netloc, path=urllib.parse.quote(parts.path, safe="/%:@!$&'()*+,;=~"))
        request = urllib.request.Request(urllib.parse.urlunsplit(quoted), method=method, headers=headers)
        for attempt in range(RETRIES + 1):
            try:
                return urllib.request.urlopen(request, timeout=limits.REMOTE_TIMEOUT_SECONDS)
            except urllib.error.HTTPError as e:
                if e.code < 500 or attempt == RETRIES:
                    raise FiltergridError(_http_reason(key, e.code)) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == RETRIES:
                    reason = getattr(e, "reason", e)
                    raise FiltergridError(f"{redact(key)}: unreachable ({reason})") from None
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")


def _http_reason(key: str, code: int) -> str:
    what = {401: "needs credentials", 403: "access denied", 404: "no such file", 416: "range not satisfiable"}
    return f"{redact(key)}: {what.get(code, 'the server refused')} (HTTP {code})"


class FsspecTransport:
    """Object stores and the Hugging Face Hub through fsspec (``s3fs``, ``gcsfs``, ``adlfs``, ``huggingface_hub``)."""

    def __init__(self, scheme: str):
        package, extra = EXTRA_FOR_SCHEME[scheme]
        try:
            import fsspec

            __import__(package)
        except ImportError:
            raise MissingExtraError(f"{scheme}:// needs the Python package {package!r}: "
                                    f"pip install 'filtergrid[{extra}]'") from None
        self.fs = fsspec.filesystem(scheme)

    def size(self, key: str) -> int:
        return int(self._call(self.fs.size, key))

    def fetch(self, key: str, start: int, end: int) -> bytes:
        data = self._call(self.fs.cat_file, key, start=start, end=end)
        if len(data) != end - start:
            raise CorruptFileError(f"{redact(key)}: asked for {end - start:,} bytes at {start:,}, got {len(data):,}")
        return data

    def is_dir(self, key: str) -> bool:
        return bool(self._call(self.fs.isdir, key))

    def listdir(self, key: str) -> list[str]:
        names = self._call(self.fs.ls, key, detail=False)
        limits.check("MAX_TENSORS", len(names), f"entries listed under {redact(key)}")
        return [posixpath.basename(str(n).rstrip("/")) for n in names]

    def find(self, key: str) -> dict[str, dict]:
        """Every object under ``key`` (names, sizes, ETags; no content), at most MAX_WALK_DEPTH deep.

        One paged listing of the prefix; more than MAX_REMOTE_LISTING objects is refused.
        """
        found = self._call(self.fs.find, key, maxdepth=limits.MAX_WALK_DEPTH, withdirs=False, detail=True)
        limits.check("MAX_REMOTE_LISTING", len(found), f"objects listed under {redact(key)}")
        return found

    def _call(self, method, key: str, **kwargs):
        try:
            return method(key, **kwargs)
        except FileNotFoundError:
            raise FiltergridError(f"{redact(key)}: no such file") from None
        except PermissionError:
            raise FiltergridError(f"{redact(key)}: access denied") from None
        except FiltergridError:
            raise
        except Exception as e:  # botocore/aiohttp/hub errors: one line, without credentials
            detail = " ".join(str(e).split())[:200]
            raise FiltergridError(f"{redact(key)}: {type(e).__name__}: {detail}") from None


if TYPE_CHECKING:  # typeshed declares io.FileIO the same way: a raw binary file is a BinaryIO
    class _RawBinary(io.RawIOBase, BinaryIO): ...
else:
    _RawBinary = io.RawIOBase


class PreadFile(_RawBinary):
    """A read-only, seekable raw file of ``size`` bytes over ``pread(start, n)``: the file API that
    h5py and ``io.BufferedReader`` use, written once for every positioned source."""

    def __init__(self, size: int):
        super().__init__()
        self._size, self._pos = size, 0

    def pread(self, start: int, n: int) -> bytes:
        """``n`` bytes at ``start`` (fewer at the end of the file)."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.pread(self._pos, len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


class RangeFile(PreadFile):
    """A read-only, seekable view of one remote file, fetched by ranges through a small LRU block cache.

    It also slices like the ``mmap`` local readers use (``f[a:b]``, ``len(f)``).
    """

    def __init__(self, transport: Transport, key: str, size: int, transfer: Transfer,
                 blocks: OrderedDict[int, bytes] | None = None):
        super().__init__(size)
        self._transport, self._key, self._transfer = transport, key, transfer
        self._blocks: OrderedDict[int, bytes] = blocks if blocks is not None else OrderedDict()

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, item: int | slice):
        if isinstance(item, int):  # one byte, as bytes and mmap give it (protobuf tags are read so)
            index = item + self._size if item < 0 else item
            if not 0 <= index < self._size:
                raise IndexError("RangeFile index out of range")
            return self._block(index // BLOCK_BYTES)[index % BLOCK_BYTES]
        start, stop, step = item.indices(self._size)
        if step != 1:
            raise ValueError("RangeFile slices take no step")
        return self.pread(start, max(0, stop - start))

    def pread(self, start: int, n: int) -> bytes:
        end = min(self._size, start + max(0, n))
        if end <= start:
            return b""
        first, last = start // BLOCK_BYTES, (end - 1) // BLOCK_BYTES
        if last - first >= DIRECT_READ_BLOCKS:
            return self._get(start, end)
        data = b"".join(self._block(i) for i in range(first, last + 1))
        offset = start - first * BLOCK_BYTES
        return data[offset: offset + end - start]

    def _block(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        start = index * BLOCK_BYTES
        block = self._get(start, min(self._size, start + BLOCK_BYTES))
        self._blocks[index] = block
        if len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return block

    def _get(self, start: int, end: int) -> bytes:
        self._transfer.count(end - start)  # counted (and bounded) before the request is sent
        return self._transport.fetch(self._key, start, end)


@dataclass(frozen=True)
class RemoteStat:
    st_size: int


class RemotePath:
    """A file or folder in a remote store, with the part of the ``pathlib.Path`` API readers use."""

    def __init__(self, url: str, transport: Transport | None = None, transfer: Transfer | None = None):
        self.url = url
        scheme = url.partition("://")[0]
        self.transport: Transport = transport or (
            HttpTransport() if scheme in STDLIB_SCHEMES else FsspecTransport(scheme))
        self.transfer = transfer if transfer is not None else Transfer()
        self._size: int | None = None
        self._blocks: OrderedDict[int, bytes] = OrderedDict()  # shared by every open: probe, then reader

    def __str__(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def _path(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    @property
    def name(self) -> str:
        return posixpath.basename(self._path.rstrip("/"))

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> RemotePath:
        parts = urllib.parse.urlsplit(self.url)
        folder = posixpath.dirname(parts.path.rstrip("/")) + "/"
        return self._sibling(urllib.parse.urlunsplit((parts.scheme, parts.netloc, folder, parts.query, "")))

    def __truediv__(self, name: str) -> RemotePath:
        parts = urllib.parse.urlsplit(self.url)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        child = posixpath.join(path, name)
        return self._sibling(urllib.parse.urlunsplit((parts.scheme, parts.netloc, child, parts.query, "")))

    def _sibling(self, url: str) -> RemotePath:
        return RemotePath(url, self.transport, self.transfer)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def parents(self) -> list[RemotePath]:
        out: list[RemotePath] = []
        current = self.parent
        while current.name and len(out) < 256:
            out.append(current)
            current = current.parent
        return out

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> RemotePath:
        return self.with_name(self.stem + suffix)

    def read_bytes(self) -> bytes:
        """The whole file (its size counts against MAX_REMOTE_BYTES like any range)."""
        return self.open().pread(0, self.stat().st_size)

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def resolve(self) -> RemotePath:
        return self

    def is_dir(self) -> bool:
        return self.transport.is_dir(self.url)

    def is_file(self) -> bool:
        return not self.is_dir() and self.exists()

    def exists(self) -> bool:
        try:
            self.stat()
        except FiltergridError:
            return False
        return True

    def stat(self) -> RemoteStat:
        if self._size is None:
            self._size = self.transport.size(self.url)
        return RemoteStat(self._size)

    def open(self, mode: str = "rb") -> RangeFile:
        """The file by ranges; unbuffered, since the block cache already batches small reads."""
        if mode != "rb":
            raise ValueError("remote models are read-only")
        return RangeFile(self.transport, self.url, self.stat().st_size, self.transfer, self._blocks)

    def iterdir(self) -> Iterator[RemotePath]:
        for name in self.transport.listdir(self.url):
            yield self / name

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries of this folder whose name matches ``pattern`` (one level, like ``*.index``)."""
        return (child for child in self.iterdir() if fnmatch.fnmatchcase(child.name, pattern))
