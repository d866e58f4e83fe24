"""What every converter module provides, and the small helpers several of them share.

A converter module is small and declares, at module level:

* ``sniff(probe) -> bool``: stdlib-only look at the first bytes (and, for zip files, member names);
* ``open(path) -> Reader``: a reader that lists tensors in model order and reads one on demand.

Heavy libraries (onnx, h5py, gguf) are imported inside ``open`` so that detection stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from ..bank import TensorInfo
from ..errors import CorruptFileError, FiltergridError, MissingExtraError
from ..layout import Convention

#: Bytes read from the start of a file for sniffing.
PROBE_BYTES = 4096

#: What ``zipfile`` (and zlib under it) raise on a damaged archive: bad CRCs, truncated or lying
#: headers (negative offsets give OSError), unknown compression or zip versions, encrypted members.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
              RuntimeError, struct.error)


@contextlib.contextmanager
def archive_errors(what: str) -> Iterator[None]:
    """Turn a damaged zip archive's exceptions into one CorruptFileError naming ``what``."""
    try:
        yield
    except FiltergridError:
        raise
    except ZIP_ERRORS as e:
        detail = " ".join(str(e).split())[:200] or "no detail"
        raise CorruptFileError(f"{what} is a damaged zip archive ({type(e).__name__}: {detail})") from None


@dataclass
class Probe:
    """What sniffers may look at: the first bytes, the size, and for zips the member names."""

    path: Path
    head: bytes = b""
    size: int = 0
    is_dir: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, path: Path) -> Probe:
        if path.is_dir():
            return cls(path, is_dir=True)
        with open(path, "rb") as f:
            head = f.read(PROBE_BYTES)
        return cls(path, head, path.stat().st_size)

    @cached_property
    def zip_names(self) -> tuple[str, ...]:
        """Member names when the file is a zip archive (``.pt``, ``.keras``, ``.npz`` all are), else ()."""
        if not self.head.startswith(b"PK"):
            return ()
        try:
            with zipfile.ZipFile(self.path) as z:
                return tuple(z.namelist())
        except ZIP_ERRORS as e:
            self.notes.append(f"zip: {' '.join(str(e).split())[:200]}")
            return ()


class Reader(Protocol):
    """An open model: its tensors in model order, and one tensor's stored values on demand."""

    def tensors(self) -> list[TensorInfo]: ...

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        """Stored values of ``name`` (decoded/dequantized to a NumPy dtype, not yet float32 or laid out).

        ``rows``, when given, allows reading only the first rows along axis 0 (heatmaps of huge
        embeddings); a reader may ignore it.
        """
        ...

    def close(self) -> None: ...


def require(module: str, extra: str):
    """Import an optional dependency or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"this format needs the Python package {module.split('.')[0]!r}: pip install 'filtergrid[{extra}]'"
        ) from None


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key where ``layer.2`` comes before ``layer.10`` and ``W1`` before ``W2``."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


_NOT_A_WEIGHT = re.compile(
    r"(^|[._/])(bias|b\d*|beta|gamma|running_mean|running_var|num_batches_tracked|moving_mean|"
    r"moving_variance|scale|zero_point|position_ids|inv_freq)$|(^|[._/])(bn\d*|norm\w*|ln\w*|layernorm\w*|batchnorm\w*)[._/]",
    re.IGNORECASE,
)


def is_weight(name: str, shape: tuple[int, ...]) -> bool:
    """A first-layer candidate by name and shape: rank >= 2, not a bias, norm or running statistic."""
    bare = re.sub(r":\d+$", "", name)  # Keras/TF variable names end in ":0"
    return len(shape) >= 2 and min(shape, default=0) > 0 and not _NOT_A_WEIGHT.search(bare)


def is_embedding(name: str, shape: tuple[int, ...]) -> bool:
    """A token/position embedding table: a lookup matrix, shown as a heatmap rather than as images."""
    lowered = name.lower()
    return len(shape) == 2 and ("embed" in lowered or "wte" in lowered or "wpe" in lowered) and "patch" not in lowered


def listing_by_name(entries: list[tuple[str, tuple[int, ...], str]], convention: Convention,
                    why: str) -> list[TensorInfo]:
    """TensorInfos for a flat name -> tensor store (safetensors, npz, state dicts) in natural name order."""
    return [tensor_info(name, shape, dtype, convention.layout_for(tuple(shape)), convention.flatten, why)
            for name, shape, dtype in sorted(entries, key=lambda e: natural_key(e[0]))]


def tensor_info(name: str, shape, dtype: str, layout: str, flatten: str, why: str) -> TensorInfo:
    """A listing entry with the shared candidate rules: weights are candidates, embeddings are heatmaps."""
    shape = tuple(shape)
    if is_embedding(name, shape):
        return TensorInfo(name, shape, dtype, "matrix", flatten, f"{why}; an embedding table, shown as a heatmap", True)
    if is_weight(name, shape):
        return TensorInfo(name, shape, dtype, layout, flatten, why, True)
    return TensorInfo(name, shape, dtype, layout, flatten, "not a weight (rank < 2, bias or normalization)", False)
