"""Find the models under the paths a user names, from names, sizes and first bytes only.

The parent process of an audit parses nothing a file says (no zip directory, no JSON, no header):
that is the workers' job, behind their time and memory limits. Here a file found in a folder is a
*candidate* when its suffix claims a model format or its first bytes carry a model format's
signature; a worker then detects it for real and may still set it aside as "not a model" (a
``.docx`` is a zip too). ``notes.txt`` is skipped here. A folder holding ``config.json`` and a
known weight file name (a Hugging Face model folder) is one model and is not descended into.

The walk is iterative and depth-limited (``limits.MAX_WALK_DEPTH``), visits each real file and
folder once (symlink loops end), and does not follow a symlink out of the folders named unless
``follow_links`` is set: nothing outside them is opened, read or hashed.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import converters, limits
from ..converters.base import natural_key
from ..converters.hf import WEIGHT_FILES
from ..remote import is_url

#: Bytes read from the start of a file found in a folder (signatures sit in the first 2 KiB).
HEAD_BYTES = 4096

_HDF5 = b"\x89HDF\r\n\x1a\n"
#: (offset, bytes) signatures of formats whose table entry has no ``heads``: HDF5 (its superblock
#: may sit at 0, 512, 1024 or 2048), TFLite's file identifier. A test checks every fixture against them.
SIGNATURES = ((0, _HDF5), (512, _HDF5), (1024, _HDF5), (2048, _HDF5), (4, b"TFL3"))

NOT_A_MODEL = "not a model file filtergrid knows"
LINK_OUT = "a symlink that leads out of the audited folders (--follow-links to audit it)"


@dataclass(frozen=True)
class Found:
    """One model to audit: a file, or a folder read as one model.

    ``claimed``: named on the command line or by a model suffix, so a worker that recognises no
    format reports an error (a broken ``model.onnx``); otherwise it sets the file aside as skipped.
    A remote model's ``path`` is its URL (a str), with the ``size`` and ``etag`` its store listed, and
    ``probed``: the bytes the parent fetched to see its first bytes (counted in the model's record).
    """

    path: Path | str
    is_folder: bool = False
    claimed: bool = True
    size: int | None = None
    etag: str | None = None
    probed: int = 0


@dataclass
class Walk:
    """What the walk found: models in a stable order, and what it passed over and why."""

    models: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def model_suffixes() -> set[str]:
    return {suffix for fmt in converters.FORMATS for suffix in fmt.suffixes}


def model_file_beside(path: Path) -> Path | None:
    """The model file a weights file belongs to, by names (OpenVINO model.bin -> model.xml): one model."""
    return next((m for fmt in converters.FORMATS if (m := fmt.model_file_of(path)) is not None), None)


def has_signature(head: bytes, size: int) -> bool:
    """First bytes that some format could own (a cheap prefix test; the worker decides)."""
    heads = tuple(h for fmt in converters.FORMATS for h in fmt.heads)
    if head.startswith(heads) or any(head[at:at + len(magic)] == magic for at, magic in SIGNATURES):
        return True
    if head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return True  # safetensors: an 8-byte header length, then a JSON object
    return head[:1] == b"\x08"  # ONNX: ModelProto starts with field 1 (ir_version), a varint


def read_head(path: Path) -> tuple[bytes, int] | None:
    """(first bytes, size) of a regular file, or None if it is not one by the time it is opened.

    Opened non-blocking and checked with fstat: a file swapped for a pipe after the walk's stat
    cannot hang the audit.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return os.read(fd, HEAD_BYTES), st.st_size
    finally:
        os.close(fd)


#: Folders that are one model by the names they hold (besides Hugging Face's, below), each a set of
#: glob patterns that all must match a name: a TensorFlow SavedModel, a TF checkpoint folder, a
#: TF.js model, a Core ML ``.mlpackage``. A worker still decides by content.
FOLDER_MARKERS = (("saved_model.pb", "variables"), ("*.index", "*.data-?????-of-?????"), ("model.json", "*.bin"),
                  ("Manifest.json", "Data"))


def marks_model_folder(names: list[str], is_file: Callable[[str], bool]) -> bool:
    """A model folder by the ``names`` it holds only: ``config.json`` beside a known weight file
    (Hugging Face), or every name of one of ``FOLDER_MARKERS``."""
    if "config.json" in names and any(name in names and is_file(name) for name in WEIGHT_FILES):
        return True
    return any(all(fnmatch.filter(names, marker) for marker in markers) for markers in FOLDER_MARKERS)


def is_model_folder(folder: Path, names: list[str]) -> bool:
    return marks_model_folder(names, lambda name: (folder / name).is_file())


@dataclass(frozen=True)
class _Visit:
    path: Path
    rel: str
    depth: int
    named: bool = False


class _Walker:
    def __init__(self, roots: list[Path], pattern: str | None, exclude: Iterable[Path], follow_links: bool):
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.pattern = pattern
        self.follow_links = follow_links
        self.seen_files: set[tuple[int, int]] = set()
        self.seen_dirs = {_identity(p) for p in exclude if p.exists()}
        self.suffixes = model_suffixes()
        self.result = Walk()

    def skip(self, path: Path, reason: str) -> None:
        self.result.skipped.append((str(path), reason))

    def matches(self, visit: _Visit) -> bool:
        """--glob applies to what a folder walk finds, never to a path the user named."""
        return (visit.named or not self.pattern or fnmatch.fnmatch(visit.path.name, self.pattern)
                or fnmatch.fnmatch(visit.rel, self.pattern))

    def leaves_roots(self, path: Path) -> bool:
        """A link whose target is outside every folder named (checked only for links: parents were)."""
        if self.follow_links or not path.is_symlink():
            return False
        real = Path(os.path.realpath(path))
        return not any(real == root or root in real.parents for root in self.roots)

    def add_file(self, visit: _Visit, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return self.skip(visit.path, "same file as one already listed (a link or duplicate path)")
        if not self.matches(visit):
            return None
        self.seen_files.add(key)
        model_file = None if visit.named else model_file_beside(visit.path)
        if model_file is not None:
            return self.skip(visit.path, f"part of the model {model_file.name} beside it (audited as that file)")
        claimed = visit.named or visit.path.suffix.lower() in self.suffixes
        if not claimed:
            head = read_head(visit.path)
            if head is None:
                return self.skip(visit.path, "not a regular file (a pipe, socket or device)")
            if not has_signature(*head):
                return self.skip(visit.path, NOT_A_MODEL)
        self.result.models.append(Found(visit.path, claimed=claimed))
        return None

    def visit(self, visit: _Visit) -> list[_Visit]:
        """Look at one path; the folder entries to visit next (none for a file)."""
        if not visit.named and self.leaves_roots(visit.path):
            self.skip(visit.path, LINK_OUT)
            return []
        try:
            st = visit.path.stat()  # follows symlinks; a loop of links raises ELOOP
            if stat.S_ISREG(st.st_mode):
                self.add_file(visit, st)
                return []
            if stat.S_ISDIR(st.st_mode):
                return self.enter(visit, st)
        except OSError as e:
            self.skip(visit.path, f"cannot read ({e.strerror or type(e).__name__})")
            return []
        self.skip(visit.path, "not a regular file (a pipe, socket or device)")
        return []

    def enter(self, visit: _Visit, st: os.stat_result) -> list[_Visit]:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            return []  # a symlink back to a folder already walked: a loop or a second route in
        self.seen_dirs.add(key)
        if visit.depth > limits.MAX_WALK_DEPTH:
            self.skip(visit.path, str(limits.exceeded("MAX_WALK_DEPTH", "folder depth", visit.depth)))
            return []
        names = sorted(os.listdir(visit.path), key=natural_key)
        if is_model_folder(visit.path, names):
            if self.matches(visit):
                self.result.models.append(Found(visit.path, is_folder=True))
            return []
        prefix = f"{visit.rel}/" if visit.rel else ""
        return [_Visit(visit.path / name, prefix + name, visit.depth + 1) for name in names]


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def find_models(paths: Iterable[str | os.PathLike], pattern: str | None = None,
                exclude: Iterable[str | os.PathLike] = (), follow_links: bool = False) -> Walk:
    """Models under ``paths`` in a stable order (the order given, then natural name order).

    Files named directly are always audited; files found in folders when their suffix or first
    bytes say they may be a model, and when they match ``pattern`` (a glob on the name or the path
    relative to the folder named); under a remote URL the same, from one listing
    (:mod:`filtergrid.audit.remotewalk`). ``exclude`` folders (the report's own output folder) are not
    walked. Symlinks out of ``paths`` are listed as skipped unless ``follow_links``.
    """
    from .remotewalk import list_remote

    paths = list(paths)
    walker = _Walker([Path(p) for p in paths if not is_url(p)], pattern, [Path(p) for p in exclude], follow_links)
    for named in paths:
        if is_url(named):
            list_remote(str(named), pattern, walker.result)
            continue
        stack = [_Visit(Path(named), "", 0, named=True)]
        while stack:
            stack.extend(reversed(walker.visit(stack.pop())))
    return walker.result
