"""Find the models under the paths a user names: each real file once, no symlink loops, bytes decide.

A folder full of checkpoints also holds READMEs, logs and configs. A file found in a folder is
audited when :func:`filtergrid.converters.detect` recognises its bytes, or when its suffix claims a
model format (an empty or truncated ``model.safetensors`` must show up as an error, not vanish);
``notes.txt`` is listed as skipped. A folder that ``detect`` recognises (a Hugging Face model folder:
config.json + weights) is one model and is not descended into.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import converters
from ..converters.base import natural_key
from ..errors import UnknownFormatError


@dataclass(frozen=True)
class Found:
    """One model to audit: a file, or a folder a converter reads as one model."""

    path: Path
    is_folder: bool = False


@dataclass
class Walk:
    """What the walk found: models in a stable order, and what it passed over and why."""

    models: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def is_model_folder(folder: Path) -> bool:
    """A folder some registered converter reads as one model (e.g. config.json + weights)."""
    try:
        converters.detect(folder)
    except Exception:  # noqa: BLE001 - any failure means "not a model folder": descend into it
        return False
    return True


def looks_like_model(path: Path) -> tuple[bool, str]:
    """(audit it?, reason when not).

    Recognised bytes make a model. Unrecognised bytes under a model suffix (an empty or truncated
    ``model.onnx``) are audited too, so that a broken checkpoint is reported rather than silently
    passed over; other unrecognised files (READMEs, logs) are skipped. Any other failure is audited
    so the worker can say what went wrong (an unreadable file is worth a line in the report).
    """
    try:
        model_file = converters.detect(path).model_file_of(path)
    except UnknownFormatError:
        if path.suffix.lower() in _model_suffixes():
            return True, ""
        return False, "not a model file filtergrid knows"
    except Exception:  # noqa: BLE001 - the worker will say what went wrong
        return True, ""
    if model_file is not None:  # OpenVINO model.bin: audited once, as its model.xml
        return False, f"part of the model {model_file.name} beside it"
    return True, ""


def _model_suffixes() -> set[str]:
    return {suffix for fmt in converters.FORMATS for suffix in fmt.suffixes}


class _Walker:
    def __init__(self, pattern: str | None, exclude: Iterable[Path]):
        self.pattern = pattern
        self.seen_files: set[tuple[int, int]] = set()
        self.seen_dirs: set[tuple[int, int]] = set()
        self.exclude = {_identity(p) for p in exclude if p.exists()}
        self.result = Walk()

    def matches(self, path: Path, rel: str, *, named: bool) -> bool:
        """--glob applies to what a folder walk finds, never to a path the user named."""
        return named or not self.pattern or fnmatch.fnmatch(path.name, self.pattern) or fnmatch.fnmatch(rel, self.pattern)

    def add_file(self, path: Path, st: os.stat_result, *, named: bool, rel: str) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            self.result.skipped.append((str(path), "same file as one already listed (a link or duplicate path)"))
            return
        if not self.matches(path, rel, named=named):
            return
        self.seen_files.add(key)
        if named:
            self.result.models.append(Found(path))
            return
        audit, reason = looks_like_model(path)
        if audit:
            self.result.models.append(Found(path))
        else:
            self.result.skipped.append((str(path), reason))

    def visit(self, path: Path, *, named: bool, rel: str) -> None:
        try:
            st = path.stat()  # follows symlinks; a loop of links raises ELOOP
        except OSError as e:
            self.result.skipped.append((str(path), f"cannot stat ({e.strerror or e})"))
            return
        if stat.S_ISREG(st.st_mode):
            self.add_file(path, st, named=named, rel=rel)
        elif stat.S_ISDIR(st.st_mode):
            self.walk_dir(path, st, rel)
        else:
            self.result.skipped.append((str(path), "not a regular file (a pipe, socket or device)"))

    def walk_dir(self, folder: Path, st: os.stat_result, rel: str) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs or key in self.exclude:
            return  # a symlink back to a folder already walked: a loop or a second route in
        self.seen_dirs.add(key)
        if is_model_folder(folder):
            if self.matches(folder, rel, named=not rel):
                self.result.models.append(Found(folder, is_folder=True))
            return
        try:
            names = sorted(os.listdir(folder), key=natural_key)
        except OSError as e:
            self.result.skipped.append((str(folder), f"cannot list folder ({e.strerror or e})"))
            return
        for name in names:
            self.visit(folder / name, named=False, rel=f"{rel}/{name}" if rel else name)


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def find_models(paths: Iterable[str | os.PathLike], pattern: str | None = None,
                exclude: Iterable[str | os.PathLike] = ()) -> Walk:
    """Models under ``paths`` in a stable order (the order given, then natural name order).

    Files named directly are always audited; files found in folders only when their bytes (or,
    failing that, their suffix) say they are a model, and when they match ``pattern`` (a glob on
    the name or the path relative to the folder named). ``exclude`` folders (the report's own
    output folder) are not walked.
    """
    walker = _Walker(pattern, [Path(p) for p in exclude])
    for p in paths:
        walker.visit(Path(p), named=True, rel="")
    return walker.result
