"""ncnn ``.param`` + ``.bin`` as ncnn's converters and pnnx write them.

The param file is text: magic ``7767517``, layer and blob counts, then per layer ``type name
inputs outputs <input blobs> <output blobs> key=value ...``. The bin file has no index: each layer
with weights reads them in layer order (ncnn ``ModelBin::load``). A weight is a 4-byte tag and its
data (tag 0 or 0x0002C056: float32; 0x01306B47: float16; 0x000D4B38: int8; another nonzero tag: a
256-entry float table then uint8 indices), sizes padded to 4 bytes; biases and batch-norm vectors are raw
float32 without a tag. Convolution weights are (out, in, kH, kW) = OIHW (param 0 = out, 1 = kW,
11 = kH, 6 = weight count, 5 = bias), InnerProduct (out, in) = OI. Listing stops at the first layer
whose bytes this module cannot size, since every later offset depends on it. The ``.param`` file
is the model; its weights are the ``.bin`` of the same stem (``model.ncnn.param`` / ``.ncnn.bin``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError
from ..safeio import ModelPath, map_whole, model_path
from .base import Probe, companion_files, sibling_pair

MAGIC = b"7767517"
_FLOAT16_TAG, _INT8_TAG, _SCALED_FLOAT32_TAG = 0x01306B47, 0x000D4B38, 0x0002C056
#: Layers that hold no weights (their bytes in the .bin are none).
_NO_WEIGHTS = {"Input", "ReLU", "ReLU6", "Sigmoid", "TanH", "Split", "Pooling", "Flatten", "Reshape",
               "Softmax", "Concat", "Eltwise", "BinaryOp", "UnaryOp", "Dropout", "Permute", "Interp",
               "Clip", "HardSwish", "HardSigmoid", "Swish", "Mish", "GELU", "Crop", "Padding", "Slice",
               "Noop", "ShuffleChannel", "Pooling1D", "Pooling3D", "Squeeze", "ExpandDims"}
#: Deconvolutions are not listed: ncnn reorders their weights, which no fixture here verifies.
_CONVOLUTIONS = {"Convolution", "ConvolutionDepthWise"}


def sniff(probe: Probe) -> bool:
    """A text param file starting with the magic. The ``.bin`` beside one is not claimed (one
    model, one file in an audit); detection names the file to open instead."""
    if probe.head.startswith(MAGIC) and probe.head[7:8] in (b"\n", b"\r"):
        return True
    pair = None if probe.is_dir or probe.path.suffix.lower() != ".bin" else sibling_pair(probe.path, ".param", ".bin")
    if pair is not None:
        with pair[0].open("rb") as f:
            if f.read(8).startswith(MAGIC):
                probe.part_of = pair[0]
    return False


@dataclass(frozen=True)
class Layer:
    type: str
    name: str
    params: dict[int, str]

    def int(self, key: int, default: int = 0) -> int:
        try:
            value = int(self.params.get(key, default))
        except ValueError:
            raise CorruptFileError(f"layer {self.name!r} param {key}={self.params[key][:20]!r} is not an integer") from None
        if not 0 <= value <= 1 << 31:
            raise CorruptFileError(f"layer {self.name!r} param {key}={value} is out of range")
        return value


def _layers(text: str) -> list[Layer]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"] or len(lines) < 2:
        raise CorruptFileError("ncnn param file does not start with 7767517 and the layer/blob counts")
    layers = []
    for fields in lines[2:]:
        if len(fields) < 4:
            raise CorruptFileError(f"ncnn param line {' '.join(fields)[:80]!r} is too short")
        kind, name = fields[0][:64], fields[1][:256]
        try:
            skip = 4 + int(fields[2]) + int(fields[3])
        except ValueError:
            raise CorruptFileError(f"layer {name!r}: blob counts are not integers") from None
        params = {}
        for item in fields[skip:]:
            key, _, value = item.partition("=")
            if key.lstrip("-").isdigit():
                params[int(key)] = value
        layers.append(Layer(kind, name, params))
        limits.check("MAX_TENSORS", len(layers), "ncnn layers")
    return layers


@dataclass(frozen=True)
class Stored:
    offset: int
    shape: tuple[int, ...]
    dtype: str  # float32 | float16 | int8 | table (256 floats, then uint8 indices)
    layout: str
    role: str


class _Walk:
    """Sizes each layer's bytes in order, recording where its tensors are."""

    def __init__(self, buf):
        self.buf, self.pos, self.found = buf, 0, {}

    def raw(self, name: str, count: int, role: str) -> None:
        self.found[name] = Stored(self.pos, (count,), "float32", "auto", role)
        self.pos += 4 * count

    def tagged(self, name: str, shape: tuple[int, ...], layout: str, role: str) -> None:
        """A weight with its 4-byte tag: which decides its element type and size."""
        if self.pos + 4 > len(self.buf):
            raise CorruptFileError(f"{name}: the .bin ends before its type tag at byte {self.pos:,}")
        (tag,) = struct.unpack_from("<I", self.buf, self.pos)
        count = int(np.prod(shape))
        start = self.pos + 4
        if tag in (0, _SCALED_FLOAT32_TAG):  # 0x0002C056: caffe2ncnn's float32 weights of a layer with int8 scales
            dtype, size = "float32", 4 * count
        elif tag == _FLOAT16_TAG:
            dtype, size = "float16", (2 * count + 3) // 4 * 4
        elif tag == _INT8_TAG:
            dtype, size = "int8", (count + 3) // 4 * 4
        else:
            dtype, size = "table", 256 * 4 + (count + 3) // 4 * 4
        self.found[name] = Stored(start, shape, dtype, layout, role)
        self.pos = start + size

    def layer(self, layer: Layer) -> bool:
        """Record the layer's tensors; False when its bytes cannot be sized."""
        if layer.type in _NO_WEIGHTS:
            return True
        if layer.type in _CONVOLUTIONS or layer.type == "InnerProduct":
            return self.weighted(layer)
        if layer.type == "BatchNorm":
            for part in ("slope", "mean", "variance", "bias"):
                self.raw(f"{layer.name}/{part}", layer.int(0), "batch normalization")
            return True
        return False

    def weighted(self, layer: Layer) -> bool:
        out = layer.int(0)
        size_key, bias_key = (6, 5) if layer.type != "InnerProduct" else (2, 1)
        count = layer.int(size_key)
        shape: tuple[int, ...]
        if layer.type == "InnerProduct":
            shape, layout = (out, count // max(out, 1)), "OI"
        else:
            kw = layer.int(1)
            kh = layer.int(11, kw)
            shape, layout = (out, count // max(out * kh * kw, 1), kh, kw), "OIHW"
        if int(np.prod(shape)) != count or count == 0:
            raise CorruptFileError(f"layer {layer.name!r}: {count} weights do not split into {out} outputs")
        self.tagged(f"{layer.name}/weight", shape, layout, f"weight of {layer.type} layer {layer.name!r}")
        if layer.int(bias_key):
            self.raw(f"{layer.name}/bias", out, "a bias")
        return not layer.int(8)  # int8 scales follow in a layout this module does not size


class NcnnReader:
    def __init__(self, param: ModelPath, weights: ModelPath):
        limits.check("MAX_HEADER_BYTES", param.stat().st_size, "ncnn param bytes")
        layers = _layers(param.read_bytes().decode("utf-8", "replace"))
        self._buf = map_whole(weights)  # tags are walked in order: a remote file is read once
        walk = _Walk(self._buf)
        self._stopped = "every layer listed"
        for layer in layers:
            if not walk.layer(layer):
                self._stopped = f"listing stops after layer {layer.name!r} ({layer.type}), whose bytes are not sized"
                break
        else:
            if walk.pos != len(self._buf):
                size = len(self._buf)
                self._buf.close()
                raise CorruptFileError(f"the param file's layers need {walk.pos:,} bytes, {weights.name} has "
                                       f"{size:,}: the .param and .bin files do not belong together")
        self._stored: dict[str, Stored] = walk.found

    def tensors(self) -> list[TensorInfo]:
        infos: list[TensorInfo] = []
        for name, s in self._stored.items():
            weight = s.layout != "auto"
            first = weight and not any(i.candidate for i in infos)
            role = f"{s.role}, the first weighted layer in param order" if first else s.role
            infos.append(TensorInfo(name, s.shape, "float32" if s.dtype == "table" else s.dtype,
                                    s.layout, "CHW", role, weight))
        return infos

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._stored:
            raise TensorNotFoundError(f"no tensor {name[:200]!r}; {self._stopped}")
        s = self._stored[name]
        if s.dtype != "table":
            return dtypes.native(dtypes.from_buffer(self._buf, s.dtype, s.shape, s.offset), s.dtype)
        table = dtypes.from_buffer(self._buf, "float32", (256,), s.offset)
        indices = dtypes.from_buffer(self._buf, "uint8", s.shape, s.offset + 1024)
        return dtypes.lookup(indices, table)

    def close(self) -> None:
        self._buf.close()


def open(path: ModelPath) -> NcnnReader:  # noqa: A001 - the registry's verb
    param, weights = companion_files(model_path(path), ".param", ".bin", "ncnn",
                                     "an ncnn model is a .param and a .bin file of the same name, side by side: "
                                     "one is missing")
    return NcnnReader(param, weights)
