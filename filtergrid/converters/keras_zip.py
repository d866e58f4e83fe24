"""Keras 3 ``.keras`` archives: a zip of ``config.json`` (layer order) and ``model.weights.h5``.

The weights member is never extracted next to the model. Stored (Keras writes it so), it is read in
place through a window onto the archive: zipfile's own member object would re-read the member
from its start on every backwards seek, and libhdf5 seeks back and forth. Deflated (an archive
re-zipped by hand), it is inflated once into an anonymous temporary file, at most its declared
size, which is bounded by ``MAX_ZIP_MEMBER_BYTES``: re-inflating on each seek never finishes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .. import limits
from ..bank import Producer
from ..errors import CorruptFileError, UnsafeFileError
from ..remote import PreadFile, RangeFile
from ..safeio import check_extent, check_member_name, open_zip, zip_errors
from .base import Probe
from .keras_h5 import KerasH5Reader

CONFIG, WEIGHTS, METADATA = "config.json", "model.weights.h5", "metadata.json"
LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra field length
INFLATE_BLOCK = 1 << 20


def sniff(probe: Probe) -> bool:
    names = set(probe.zip_names)
    return CONFIG in names and WEIGHTS in names


class MemberWindow(PreadFile):
    """A read-only, seekable view of ``size`` bytes at ``start`` of an open file (a stored member)."""

    def __init__(self, raw: BinaryIO, start: int, size: int):
        super().__init__(size)
        self._start, self._raw = start, raw

    def pread(self, start: int, n: int) -> bytes:
        """A remote archive's RangeFile has its own ``pread``; a local file's descriptor has the OS's."""
        n = max(0, min(n, self._size - start))
        if isinstance(self._raw, RangeFile):
            return self._raw.pread(self._start + start, n)
        return os.pread(self._raw.fileno(), n, self._start + start)

    def close(self) -> None:
        super().close()
        self._raw.close()


def read_config(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """``config.json`` (or ``metadata.json``), bounded by MAX_CONFIG_BYTES: the central directory's size
    first, then the bytes actually inflated (a directory can understate them)."""
    limits.check("MAX_CONFIG_BYTES", info.file_size, f"{info.filename} (its declared size)")
    with archive.open(info) as member:
        data = member.read(limits.MAX_CONFIG_BYTES + 1)
    limits.check("MAX_CONFIG_BYTES", len(data), f"{info.filename} (inflated)")
    return data.decode("utf-8", "replace")


def open_weights(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    """A seekable file of the weights member: a window onto the archive, or an inflated temporary."""
    limits.check("MAX_ZIP_MEMBER_BYTES", info.file_size, f"{WEIGHTS} (its declared size)")
    if info.flag_bits & 0x1:
        raise UnsafeFileError(f"{WEIGHTS} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        raw = path.open("rb")  # noqa: SIM115 - closed with the window
        size = raw.seek(0, 2)
        raw.seek(info.header_offset)
        header = raw.read(LOCAL_HEADER.size).ljust(LOCAL_HEADER.size, b"\0")
        signature, name_length, extra_length = LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raw.close()
            raise CorruptFileError(f"{WEIGHTS} has no local header at byte {info.header_offset:,}")
        start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
        check_extent(start, info.file_size, size, WEIGHTS)
        return io.BufferedReader(MemberWindow(raw, start, info.file_size), INFLATE_BLOCK)  # type: ignore[return-value]
    inflated = tempfile.TemporaryFile()  # anonymous: gone when closed, or when the process ends
    try:
        with archive.open(info) as member:  # zipfile stops at the declared size and checks the CRC
            shutil.copyfileobj(member, inflated, INFLATE_BLOCK)
    except BaseException:
        inflated.close()
        raise
    inflated.seek(0)
    return inflated


class KerasZipReader(KerasH5Reader):
    """The HDF5 reader over the archive's weights member (read in place, or inflated once)."""

    def __init__(self, path: Path):
        self.path = path
        with zip_errors(path.name):
            with open_zip(path) as archive:
                members = {i.filename: i for i in archive.infolist()}
                for name in members:
                    check_member_name(name, ".keras member")
                if CONFIG not in members or WEIGHTS not in members:
                    raise CorruptFileError(f"a .keras archive holds {CONFIG} and {WEIGHTS}; this one has "
                                           f"{', '.join(list(members)[:8]) or 'no members'}")
                config = read_config(archive, members[CONFIG])
                self._metadata = read_config(archive, members[METADATA]) if METADATA in members else ""
                weights = open_weights(path, archive, members[WEIGHTS])
        super().__init__(fileobj=weights, config_json=config)

    def _written_by(self) -> Producer | None:
        """``keras_version`` (and ``date_saved``) of the archive's ``metadata.json``."""
        try:
            metadata = json.loads(self._metadata or "{}")
        except (ValueError, RecursionError):
            return None  # a damaged note about the writer is no reason to refuse the weights
        if not isinstance(metadata, dict):
            return None
        version, saved = (v if isinstance(v, str) else "" for v in map(metadata.get, ("keras_version", "date_saved")))
        return Producer.recorded("keras" if version else "", version, details=(f"saved {saved}" if saved else "",))

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """h5py reads the weights through the zip member: CRC and inflate errors surface here too."""
        with zip_errors(self.path.name), super()._errors():
            yield


def open(path: Path) -> KerasZipReader:  # noqa: A001 - the registry's verb
    return KerasZipReader(path)
