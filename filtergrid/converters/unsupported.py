"""Model formats filtergrid recognises by their bytes but does not read, and why.

Detection asks :func:`identify` before any reader, so a dlib ``.dat`` or a TensorRT engine ends in
"this is a <format> file; filtergrid cannot read it because ..." instead of a reader's confused
error or "not a model file". Signatures follow each format's own writer (cited per check); every
check looks at the probe's first bytes only. Keras 1 HDF5 is told by the Keras reader, which
opens HDF5 files only after its own safety checks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..errors import UnsupportedFormatError
from .base import Probe


def _dlib(head: bytes) -> bool:
    """dlib ``serialize``: int version 1 (size byte 1, value 1), then for a DNN the loss layer's
    name string (``loss_metric_2``, ``loss_mmod_``), for a shape predictor a column matrix written
    with negated dimensions (``-nr``, ``-1``: size bytes with the sign bit 0x80)."""
    if not head.startswith(b"\x01\x01") or len(head) < 6:
        return False
    if head[2] == 1 and head[4:9] == b"loss_":
        return True
    return head[2] == 0x81 and head[4:6] == b"\x81\x01" or head[2] == 0x82 and head[5:7] == b"\x81\x01"


def _tensorrt(head: bytes) -> bool:
    """A serialized TensorRT engine (plan) starts with ``ptrt``/``ftrt``, possibly after a
    length-prefixed JSON header (as Netron's reader checks)."""
    if head[:4] in (b"ptrt", b"ftrt"):
        return True
    if len(head) >= 24 and head[3] == 0 and head[4:5] == b"{":
        offset = struct.unpack_from("<I", head)[0] + 4
        return head[offset:offset + 4] in (b"ptrt", b"ftrt")
    return False


def _mxnet(head: bytes) -> bool:
    """MXNet ``nd.save`` / ``.params``: uint64 magic 0x112 then a reserved uint64 0."""
    return head.startswith(b"\x12\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")


def _executorch(head: bytes) -> bool:
    """ExecuTorch ``.pte``: a flatbuffer whose file identifier (bytes 4-8) is ``ET`` and two digits."""
    return len(head) >= 8 and head[4:6] == b"ET" and head[6:8].isdigit()


def _torch7(head: bytes) -> bool:
    """Lua Torch7 ``torch.save`` (binary): int32 type 4 (a torch object), int32 index, then the
    version string ``V <n>`` with its int32 length, then the class name."""
    if len(head) < 16 or head[:4] != b"\x04\x00\x00\x00":
        return False
    (length,) = struct.unpack_from("<i", head, 8)
    return 3 <= length <= 8 and head[12:14] == b"V "


_REASONS: tuple[tuple[str, Callable[[bytes], bool], str], ...] = (
    ("TensorRT engine", _tensorrt, "an engine is compiled for one GPU and TensorRT version; its "
     "weights are fused into kernels with no documented layout (export the model to ONNX instead)"),
    ("ExecuTorch .pte", _executorch, "its delegate blobs and constant segments have no stable "
     "public layout (read the model before export, or its ONNX export)"),
    ("MXNet .params", _mxnet, "MXNet NDArray lists carry no graph order to find the first layer "
     "(export to ONNX with mxnet.onnx)"),
    ("dlib .dat", _dlib, "dlib's serialization is C++ template-specific and records no layer "
     "shapes one can read without the exact network type"),
    ("Lua Torch7 .t7", _torch7, "Torch7 files are Lua object graphs (convert with a Torch7 "
     "loader to PyTorch first)"),
)

#: Found by the Keras HDF5 reader once the file is known to be safe to open (see keras_h5).
KERAS1 = ("Keras 1 HDF5", "Keras 1 stored convolution kernels in the backend's own order "
          "(Theano kernels are flipped, channels first) which the file does not record; re-save "
          "the model with Keras 2 or later")


def refusal(name: str, why: str, path: str | None = None) -> UnsupportedFormatError:
    """The one message for a recognised format filtergrid does not read."""
    article = "an" if name[0] in "AEIOU" else "a"
    noun = "" if name.endswith("folder") else " file"
    return UnsupportedFormatError(f"this is {article} {name}{noun}; filtergrid cannot read it because {why}",
                                  path=path, format=name)


def identify(probe: Probe) -> tuple[str, str] | None:
    """(format, why filtergrid cannot read it) when the file's first bytes are a recognised unreadable
    format. (Folders are all readable; one whose reader needs a missing extra is refused by detection.)"""
    if probe.is_dir:
        return None
    return next(((name, why) for name, check, why in _REASONS if check(probe.head)), None)
