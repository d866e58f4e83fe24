"""Named limits that bound what an untrusted file can make filtergrid do.

Like Pillow's ``MAX_IMAGE_PIXELS``: module constants, read at call time, so a caller (or a test)
can raise or lower them with ``filtergrid.limits.MAX_TENSOR_BYTES = ...``. Each can also be set by
an environment variable of the same name prefixed with ``FILTERGRID_`` (bytes or a count).
See docs/security.md for what each one protects against.
"""

from __future__ import annotations

import os
import sys

from .errors import LimitError


def _env(name: str, default: int) -> int:
    raw = os.environ.get(f"FILTERGRID_{name}")
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


#: Largest tensor filtergrid will decode into memory (decoded float32 bytes).
MAX_TENSOR_BYTES = _env("MAX_TENSOR_BYTES", 2 * 1024**3)
#: Largest index/header a format may declare (safetensors JSON header, GGUF metadata, HF/Keras JSON,
#: the structure of an ONNX graph: every byte of it but tensor values).
MAX_HEADER_BYTES = _env("MAX_HEADER_BYTES", 256 * 1024**2)
#: Largest model config parsed as JSON (a ``.keras`` ``config.json``, a Keras 2 ``model_config``);
#: real ones are a few hundred KB, and JSON parsing costs several times the text's size in memory.
MAX_CONFIG_BYTES = _env("MAX_CONFIG_BYTES", 32 * 1024**2)
#: Largest pickle (data.pkl, constants.pkl, a legacy torch file's object) the safe unpickler reads.
MAX_PICKLE_BYTES = _env("MAX_PICKLE_BYTES", 256 * 1024**2)
#: Largest number of tensors listed in one model (bounds index walks).
MAX_TENSORS = _env("MAX_TENSORS", 1_000_000)
#: Largest rendered image, in pixels (width x height).
MAX_OUTPUT_PIXELS = _env("MAX_OUTPUT_PIXELS", 64 * 1024**2)
#: Rows of a matrix shown as a heatmap (an LLM's vocab x dim embedding is cut to this many rows).
MAX_HEATMAP_ROWS = _env("MAX_HEATMAP_ROWS", 512)
#: Columns of a matrix shown as a heatmap.
MAX_HEATMAP_COLS = _env("MAX_HEATMAP_COLS", 2048)
#: Largest member of a zip archive that filtergrid inflates (guards against zip bombs).
MAX_ZIP_MEMBER_BYTES = _env("MAX_ZIP_MEMBER_BYTES", 4 * 1024**3)
#: Most bytes fetched from a remote store for one model (its index plus the tensor shown).
MAX_REMOTE_BYTES = _env("MAX_REMOTE_BYTES", 4 * 1024**3)
#: Seconds one remote request may wait for the server before it is retried (then fails).
REMOTE_TIMEOUT_SECONDS = _env("REMOTE_TIMEOUT_SECONDS", 30)
#: Deepest nesting of subgraphs / containers followed (ONNX If/Loop bodies, nested pickles).
MAX_NESTING = _env("MAX_NESTING", 64)
#: Largest ratio of a sparse tensor's dense bytes to the model file's size (ONNX sparse
#: initializers): a file of a few dozen bytes may not densify to 2 GiB.
MAX_SPARSE_EXPANSION = _env("MAX_SPARSE_EXPANSION", 1024)
#: Deepest folder nesting an audit walks below a folder it was given (deeper folders are skipped).
MAX_WALK_DEPTH = _env("MAX_WALK_DEPTH", 64)
#: Most objects one remote prefix an audit lists may hold (``s3://bucket/prefix/``); the listing
#: is names and sizes only, paged by the store, and a larger prefix is refused, not truncated.
MAX_REMOTE_LISTING = _env("MAX_REMOTE_LISTING", 1_000_000)
#: Work one byte of a file may cause: float32 bytes decoded per stored byte a tensor reads (a torch
#: view with stride 0 repeats one number 2 GiB over), tensor-name characters per pickle byte (a
#: shared 200 KB key spelled into every name). A pickle counts as at least 64 KiB.
MAX_WORK_PER_BYTE = _env("MAX_WORK_PER_BYTE", 64)
#: Opcodes one pickle may run; each may make an object (64 Mi EMPTY_DICTs deflate to 64 KB of
#: data.pkl). A torch.save state dict takes about 40 per tensor, so this is ~50,000 tensors.
MAX_PICKLE_OPS = _env("MAX_PICKLE_OPS", 2_000_000)

#: Largest ratio of a compressed chunk's decoded bytes to its stored bytes (zarr arrays of Orbax
#: checkpoints, decoded by tensorstore): trained weights compress about 1.1x, so a 1 KB chunk may
#: not declare 1 GB. A layer of all zeros compresses beyond it and is refused naming this limit.
MAX_COMPRESSION_RATIO = _env("MAX_COMPRESSION_RATIO", 1024)
#: Seconds one call into a native reader (tensorstore, for Orbax checkpoints) may take before it is
#: abandoned: its parsing of a hostile folder cannot be stopped between Python steps.
NATIVE_READ_SECONDS = _env("NATIVE_READ_SECONDS", 60)


def exceeded(name: str, what: str, value: int | None = None) -> LimitError:
    """The one error for a named limit: what went over, the limit's value, and how to raise it.

    Callers ``raise limits.exceeded(...)`` so an audit can tell "raise the limit" from "broken file".
    """
    limit = getattr(sys.modules[__name__], name)
    amount = f" ({value:,})" if value is not None else ""
    return LimitError(f"{what}{amount} is over the limit {name}={limit:,}; "
                      f"if you trust the file, raise it with FILTERGRID_{name}")


def check(name: str, value: int, what: str) -> None:
    """Raise :func:`exceeded` when ``value`` is over the named limit (read now, so changes apply)."""
    if value > getattr(sys.modules[__name__], name):
        raise exceeded(name, what, value)
