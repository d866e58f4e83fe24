"""Darknet ``.cfg`` + ``.weights`` (YOLO): the cfg gives the layers, the weights file their values.

Layout (darknet ``src/parser.c``, ``save_weights``): int32 major, minor, revision; ``seen`` as
uint64 when major*10+minor >= 2, else int32; then per layer in cfg order: a convolutional layer's
biases (n), with ``batch_normalize`` its scales, rolling means and variances (n each), then its
weights (n, c/groups, size, size) = OIHW; a connected layer's biases (out), weights (out, in) =
OI, then the same batch-norm triple. All float32. The weights hold no shapes, so channel counts are
followed through the cfg from ``[net] channels``; listing stops at the first layer whose input
this module cannot follow (route, shortcut, ...), since every later offset depends on it.
The ``.weights`` file is the model; its cfg is the ``.cfg`` of the same stem in the same folder.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError
from ..safeio import ModelPath, map_whole, model_path
from .base import Probe, companion_files, sibling_pair

_SECTION = re.compile(r"^\[(\w+)\]\s*$")
#: Layers that keep the channel count and hold no weights (their spatial size is not needed).
_PASS_THROUGH = {"maxpool", "dropout", "avgpool", "softmax", "cost", "activation"}
_BN_PARTS = ("scales", "rolling_mean", "rolling_variance")


def _is_cfg_text(head: bytes) -> bool:
    for line in head.splitlines()[:50]:
        line = line.strip()
        if line and not line.startswith((b"#", b";")):
            return line in (b"[net]", b"[network]")
    return False


def sniff(probe: Probe) -> bool:
    """A ``.weights`` file beside a ``[net]`` cfg of the same stem. The cfg itself is not claimed
    (one model, one file in an audit); detection names the file to open instead."""
    pair = None if probe.is_dir else sibling_pair(probe.path, ".cfg", ".weights")
    if pair is None:
        return False
    cfg, weights = pair
    if cfg == probe.path:
        if _is_cfg_text(probe.head):
            probe.part_of = weights
        return False
    with cfg.open("rb") as f:
        return _is_cfg_text(f.read(4096))


def _sections(text: str) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith(";"):
            continue
        match = _SECTION.match(line)
        if match:
            sections.append((match.group(1).lower(), {}))
            limits.check("MAX_TENSORS", len(sections), "cfg sections")
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def _int(options: dict[str, str], key: str, default: int) -> int:
    try:
        value = int(options.get(key, default))
    except ValueError:
        raise CorruptFileError(f"cfg option {key}={options[key][:40]!r} is not an integer") from None
    if not 0 <= value <= 1 << 24:
        raise CorruptFileError(f"cfg option {key}={value} is out of range")
    return value


@dataclass(frozen=True)
class Stored:
    offset: int
    shape: tuple[int, ...]
    layout: str
    role: str


def _conv(index: int, opts: dict[str, str], channels: int, offset: int) -> tuple[dict[str, Stored], int, int]:
    n, size, groups = _int(opts, "filters", 1), _int(opts, "size", 1), max(1, _int(opts, "groups", 1))
    if channels % groups:
        raise CorruptFileError(f"layer {index}: {channels} channels do not split into {groups} groups")
    found = {f"{index}.biases": Stored(offset, (n,), "auto", "a bias")}
    offset += 4 * n
    if _int(opts, "batch_normalize", 0):
        for part in _BN_PARTS:
            found[f"{index}.{part}"] = Stored(offset, (n,), "auto", "batch normalization")
            offset += 4 * n
    shape = (n, channels // groups, size, size)
    found[f"{index}.weights"] = Stored(offset, shape, "OIHW", f"weights of convolutional layer {index}")
    return found, offset + 4 * int(np.prod(shape)), n


def _connected(index: int, opts: dict[str, str], inputs: int, offset: int) -> tuple[dict[str, Stored], int, int]:
    n = _int(opts, "output", 1)
    found = {f"{index}.biases": Stored(offset, (n,), "auto", "a bias"),
             f"{index}.weights": Stored(offset + 4 * n, (n, inputs), "OI", f"weights of connected layer {index}")}
    offset += 4 * n + 4 * n * inputs
    if _int(opts, "batch_normalize", 0):
        for part in _BN_PARTS:
            found[f"{index}.{part}"] = Stored(offset, (n,), "auto", "batch normalization")
            offset += 4 * n
    return found, offset, n


def _layout(sections: list[tuple[str, dict[str, str]]], offset: int) -> tuple[dict[str, Stored], str, int | None]:
    """Every tensor whose offset the cfg determines, where (and why) listing stopped, and the
    offset where the weights end when every layer was followed (else None)."""
    if not sections or sections[0][0] not in ("net", "network"):
        raise CorruptFileError("cfg does not start with a [net] section")
    net = sections[0][1]
    channels = _int(net, "channels", 3)
    pixels = _int(net, "height", 1) * _int(net, "width", 1) * channels
    found: dict[str, Stored] = {}
    for index, (kind, opts) in enumerate(sections[1:]):
        if kind in ("convolutional", "conv"):
            more, offset, channels = _conv(index, opts, channels, offset)
            pixels = 0  # the spatial size after a convolution is not followed
        elif kind in ("connected", "fc") and (pixels or not found):
            more, offset, channels = _connected(index, opts, pixels or channels, offset)
            pixels = channels
        elif kind in _PASS_THROUGH:
            pixels = 0
            continue
        else:
            return found, f"listing stops at layer {index} [{kind[:20]}], whose input is not followed", None
        found.update(more)
    return found, "every layer listed", offset


class DarknetReader:
    def __init__(self, cfg: ModelPath, weights: ModelPath):
        limits.check("MAX_HEADER_BYTES", cfg.stat().st_size, "Darknet cfg bytes")
        text = cfg.read_bytes().decode("utf-8", "replace")
        self._buf = map_whole(weights)  # offsets follow the cfg through the file: a remote one is read once
        self._stored, self._stopped, end = _layout(_sections(text), self._header_size())
        if end is not None and end != len(self._buf):
            size = len(self._buf)
            self._buf.close()
            raise CorruptFileError(f"the cfg's layers need {end:,} bytes of weights, {weights.name} has "
                                   f"{size:,}: the cfg and weights files do not belong together")

    def _header_size(self) -> int:
        if len(self._buf) < 16:
            raise CorruptFileError("weights file is shorter than its 16-byte header")
        major, minor, _ = struct.unpack_from("<3i", self._buf)
        return 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16

    def producer(self) -> Producer | None:
        """The weights header's major.minor.revision: the darknet version that wrote the file."""
        major, minor, revision = struct.unpack_from("<3i", self._buf)
        return Producer.recorded(format_version=f"Darknet weights header {major}.{minor}.{revision}")

    def tensors(self) -> list[TensorInfo]:
        infos: list[TensorInfo] = []
        for name, s in self._stored.items():
            weight = s.layout != "auto"
            first = weight and not any(i.candidate for i in infos)
            role = f"{s.role}, the first layer in cfg order" if first else s.role
            infos.append(TensorInfo(name, s.shape, "float32", s.layout, "CHW", role, weight))
        return infos

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._stored:
            raise TensorNotFoundError(f"no tensor {name[:200]!r}; {self._stopped}")
        s = self._stored[name]
        dtypes.check_fits(s.shape, "float32", len(self._buf) - s.offset, f"Darknet {name}")
        return dtypes.native(dtypes.from_buffer(self._buf, "float32", s.shape, s.offset), "float32")

    def close(self) -> None:
        self._buf.close()


def open(path: ModelPath) -> DarknetReader:  # noqa: A001 - the registry's verb
    cfg, weights = companion_files(model_path(path), ".cfg", ".weights", "Darknet",
                                   "a Darknet model is a .cfg and a .weights file of the same name, side by side: "
                                   "one is missing")
    return DarknetReader(cfg, weights)
