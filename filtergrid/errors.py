"""The one error family filtergrid raises; only the CLI turns it into an exit code."""

from __future__ import annotations


class FiltergridError(Exception):
    """Anything a user can cause: bad file, bad option, refused content. One line, no traceback."""

    def __init__(self, message: str, *, path: str | None = None, format: str | None = None):
        self.path = path
        self.format = format
        self.reason = " ".join(str(message).split())  # one line, always
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = ", ".join(p for p in (self.path, self.format) if p)
        return f"{where}: {self.reason}" if where else self.reason


class UnknownFormatError(FiltergridError):
    """No converter recognised the file; the message lists what was probed."""


class UnsupportedFormatError(FiltergridError):
    """A format filtergrid recognises but cannot read (yet); an audit lists it as "unsupported"."""


class CorruptFileError(FiltergridError):
    """The file claims to be a format but its bytes do not hold together."""


class UnsafeFileError(FiltergridError):
    """The file asks for something filtergrid refuses to do: run code, read outside its folder."""


class LimitError(FiltergridError):
    """A named limit (see :mod:`filtergrid.limits`) would be exceeded."""


class TensorNotFoundError(FiltergridError):
    """``--tensor NAME`` names nothing in the file; the message lists the candidates."""


class MissingExtraError(FiltergridError):
    """The format needs an optional dependency; the message names the pip extra."""


class UsageError(FiltergridError):
    """Options that do not fit the data (a layout of the wrong rank, an image shape of the wrong size)."""


class TimeLimitError(FiltergridError):
    """Work on one file went past its time limit."""


class CompanionFileError(UnknownFormatError):
    """The file is one part of a model whose main file is another (a Darknet .cfg, an ncnn .bin)."""
