"""Keras 3 ``.keras`` archives: a zip of ``config.json`` (layer order) and ``model.weights.h5``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .. import limits
from ..errors import CorruptFileError
from ..safeio import check_member_name, open_zip, zip_errors
from .base import Probe
from .keras_h5 import KerasH5Reader

CONFIG, WEIGHTS = "config.json", "model.weights.h5"


def sniff(probe: Probe) -> bool:
    names = set(probe.zip_names)
    return CONFIG in names and WEIGHTS in names


class KerasZipReader(KerasH5Reader):
    """The HDF5 reader over the archive's weights member (read in place, never extracted)."""

    def __init__(self, path: Path):
        self.path = path
        with zip_errors(path.name):
            self._zip = open_zip(path)
            members = {i.filename: i for i in self._zip.infolist()}
            for name in members:
                check_member_name(name, ".keras member")
            if CONFIG not in members or WEIGHTS not in members:
                raise CorruptFileError(f"a .keras archive holds {CONFIG} and {WEIGHTS}; this one has "
                                       f"{', '.join(list(members)[:8]) or 'no members'}")
            if members[CONFIG].file_size > limits.MAX_HEADER_BYTES:
                raise CorruptFileError(f"{CONFIG} claims {members[CONFIG].file_size:,} bytes, over MAX_HEADER_BYTES")
            config = self._zip.read(members[CONFIG])
            if members[WEIGHTS].file_size > limits.MAX_ZIP_MEMBER_BYTES:
                raise CorruptFileError(f"{WEIGHTS} is larger than MAX_ZIP_MEMBER_BYTES")
            self._member = self._zip.open(members[WEIGHTS])
        super().__init__(fileobj=self._member, config_json=config.decode("utf-8", "replace"))

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """h5py reads the weights through the zip member: CRC and inflate errors surface here too."""
        with zip_errors(self.path.name), super()._errors():
            yield

    def close(self) -> None:
        super().close()
        self._member.close()
        self._zip.close()


def open(path: Path) -> KerasZipReader:  # noqa: A001 - the registry's verb
    return KerasZipReader(path)
