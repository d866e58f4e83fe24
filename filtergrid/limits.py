"""Named limits that bound what an untrusted file can make filtergrid do.

Like Pillow's ``MAX_IMAGE_PIXELS``: module constants, read at call time, so a caller (or a test)
can raise or lower them with ``filtergrid.limits.MAX_TENSOR_BYTES = ...``. Each can also be set by
an environment variable of the same name prefixed with ``FILTERGRID_`` (bytes or a count).
See docs/security.md for what each one protects against.
"""

from __future__ import annotations

import os


def _env(name: str, default: int) -> int:
    raw = os.environ.get(f"FILTERGRID_{name}")
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


#: Largest tensor filtergrid will decode into memory (decoded float32 bytes).
MAX_TENSOR_BYTES = _env("MAX_TENSOR_BYTES", 2 * 1024**3)
#: Largest index/header a format may declare (safetensors JSON header, GGUF metadata, ONNX graph).
MAX_HEADER_BYTES = _env("MAX_HEADER_BYTES", 256 * 1024**2)
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
#: Deepest nesting of subgraphs / containers followed (ONNX If/Loop bodies, nested pickles).
MAX_NESTING = _env("MAX_NESTING", 64)
