"""The one error family filtergrid raises; only the CLI turns it into an exit code."""

from __future__ import annotations

import errno
import json
import re


class FiltergridError(Exception):
    """Anything a user can cause: bad file, bad option, refused content. One line, no traceback."""

    def __init__(self, message: str, *, path: str | None = None, format: str | None = None):
        self.path = path
        self.format = format
        #: The format as a sentence names it ("ONNX file"); set with the path by ``api``.
        self.kind: str | None = None
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
    """The file claims to be a format but its bytes do not hold together.

    Every format words it the same way, ``model.onnx: this ONNX file is damaged: <reason>``, so a
    reason says only what is wrong and where: "it ends in the middle of the model (a piece of 18,565
    bytes at byte 23, 1,977 bytes left, in a file of 2,000 bytes)".
    """

    #: How the sentence starts once ``api`` knows the format (``kind``: "ONNX file").
    WORDING = "this {kind} is damaged"

    def _compose(self) -> str:
        if not self.kind:
            return super()._compose()
        said = f"{self.WORDING.format(kind=self.kind)}: {self.reason}"
        return f"{self.path}: {said}" if self.path else said


class UnreadableFeatureError(CorruptFileError):
    """A file that holds together but uses something filtergrid does not read (an element type, a
    quantization scheme, a pickle opcode): ``model.onnx: filtergrid cannot read this ONNX file: <what>``."""

    WORDING = "filtergrid cannot read this {kind}"


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


#: pickle names its instructions in capitals: "BINBYTES8 exceeds ...", "STACK_GLOBAL requires str".
_OPCODE = re.compile(r"[A-Z][A-Z_0-9]{3,} ")
#: h5py's "Unable to synchronously open object (bad version ...)": libhdf5's reason is the part in brackets.
_LIBRARY_PREFIX = re.compile(r"^(?:Unable to|Can't|Link iteration failed)[^(]*\(|\)$")

#: Library exceptions whose own words mean nothing to someone holding a model: what they say instead.
_PLAIN_WORDS = (
    ("pop from empty list", "its instructions take more values than they made"),
    ("unpack requires a buffer", "it ends early"), ("unpack_from requires a buffer", "it ends early"),
    ("exhausted before end of frame", "it ends early"), ("incomplete input", "it ends early"),
    ("index out of range", "a count or position in it points past its end"),
    ("truncated file", "it ends early"),
    ("Memo value not found", "it refers to a value it never stored"),
    ("while decompressing data", "its compressed data is damaged"), ("received extra data", "it has bytes after its end"),
    ("<ast.", "it holds an expression where a value belongs"),
    ("indices must be integers", "it holds a list where a table belongs"),
    ("not subscriptable", "it holds a single value where a table belongs"),
)


def plain(error: BaseException) -> str:
    """What a library's exception (json, zipfile, pickle, h5py, struct...) says about a file, in a
    model user's words: no Python class names, no "unpack requires a buffer"; one bounded line."""
    if isinstance(error, UnicodeDecodeError):
        return f"bytes at position {error.start:,} are not text (UTF-8)"
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg[:80].lower().removesuffix(' at')} at line {error.lineno:,}, column {error.colno:,}"
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str) \
            and " " not in error.args[0]:
        return f"it has no {error.args[0][:80]!r} entry"
    if isinstance(error, EOFError):
        return "it ends early"
    if isinstance(error, RecursionError):
        return "it nests values too deeply"
    text = " ".join(str(error.strerror if isinstance(error, OSError) and error.strerror else error).split())
    for words, meaning in _PLAIN_WORDS:
        if words in text:
            return meaning
    if isinstance(error, (AttributeError, NameError, AssertionError, ArithmeticError, TypeError)):
        return "its contents are not what filtergrid expects"  # Python's own words would name our code
    if isinstance(error, OSError) and error.errno == errno.EINVAL:
        return "a position in it lies outside the file"
    if _OPCODE.match(text):
        return "one of its instructions is malformed"
    text = _LIBRARY_PREFIX.sub("", text[1:-1] if text[:1] == text[-1:] == "'" else text).strip(" .")
    return (text[:200] or "its contents do not fit together").replace("Bad CRC-32", "a checksum does not match")
