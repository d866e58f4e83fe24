"""Caffe ``.caffemodel``: a NetParameter protobuf whose layers carry their weights as BlobProtos.

Schema: BVLC caffe ``src/caffe/proto/caffe.proto``. NetParameter lists its layers in net order
(``layer`` = 100, LayerParameter with a string ``type``; legacy files use ``layers`` = 2,
V1LayerParameter with an enum type). A blob's shape is ``shape`` (BlobShape, int64 dims) or the
legacy ``num, channels, height, width``; values are packed ``data`` floats or ``double_data``.
The first Convolution / InnerProduct / Deconvolution in layer order is the first layer. The file
is walked on the wire (:mod:`.protowire`) over an mmap; only the chosen blob's values are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError
from ..safeio import ModelPath, map_whole, model_path
from .base import Probe
from .protowire import (
    LEN,
    VARINT,
    iter_fields,
    packed_varints,
    read_varint,
    signed,
    text,
)

#: V1LayerParameter.LayerType codes of layers with a weight blob.
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}
#: Weight layout by layer type (InnerProduct with ``transpose: true`` stores (in, out)).
_LAYOUTS = {"Convolution": "OIHW", "Deconvolution": "IOHW", "InnerProduct": "OI"}
_NET_LAYER, _NET_V1_LAYERS = 100, 2
_INNER_PRODUCT_PARAM, _TRANSPOSE = 117, 6


def _key(head: bytes, pos: int) -> tuple[int, int, int] | None:
    try:
        key, pos = read_varint(head, pos, len(head), "probe")
    except CorruptFileError:
        return None
    return key >> 3, key & 7, pos


#: NetParameter fields that may start a net, with their wire types: name, layers, input, input_dim
#: (unpacked or packed), force_backward, state, debug_info, input_shape, layer. The types matter: an
#: ONNX ModelProto starts with a varint field 1 (``ir_version``), never a Caffe net's ``name``.
_NET_WIRES = {1: (LEN,), _NET_V1_LAYERS: (LEN,), 3: (LEN,), 4: (VARINT, LEN), 5: (VARINT,), 6: (LEN,),
              7: (VARINT,), 8: (LEN,), _NET_LAYER: (LEN,)}


def sniff(probe: Probe) -> bool:
    """A NetParameter: a few preamble fields, then a ``layer`` (100) or legacy ``layers`` (2)
    message that itself starts with a LayerParameter / V1LayerParameter field."""
    head, pos = probe.head, 0
    for _ in range(16):
        found = _key(head, pos)
        if found is None:
            return False
        number, wire, pos = found
        try:
            value, after = read_varint(head, pos, len(head), "probe")
        except CorruptFileError:
            return False
        if wire not in _NET_WIRES.get(number, ()):
            return False
        if wire == LEN:
            inner = _key(head, after) if value else None  # a layer is never an empty message
            if number == _NET_LAYER:
                return inner is not None and inner[:2] == (1, LEN)  # LayerParameter.name
            if number == _NET_V1_LAYERS:  # V1LayerParameter bottom, top, name or type
                return inner is not None and inner[:2] in ((2, LEN), (3, LEN), (4, LEN), (5, VARINT))
            after += value
        pos = after
    return False


@dataclass
class Blob:
    shape: tuple[int, ...] = ()
    legacy: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    values: tuple[int, int, str] | None = None  # (start, end, float32|float64)


@dataclass
class Layer:
    name: str
    type: str
    blobs: list[Blob]
    transpose: bool = False


def _blob(buf, start: int, end: int) -> Blob:
    blob, has_legacy = Blob(), False
    for number, wire, a, b in iter_fields(buf, start, end, "BlobProto"):
        if number == 7 and wire == LEN:
            dims = [signed(d) for n, w, d, _ in iter_fields(buf, a, b, "BlobShape") if n == 1 and w == VARINT]
            packed = [int(d) for n, w, s, e in iter_fields(buf, a, b, "BlobShape") if n == 1 and w == LEN
                      for d in packed_varints(buf, s, e, "BlobShape.dim")[:9]]
            blob.shape = tuple(dims + packed)
        elif 1 <= number <= 4 and wire == VARINT:
            blob.legacy[number - 1], has_legacy = signed(a), True
        elif number in (5, 8) and wire == LEN:
            blob.values = (a, b, "float32" if number == 5 else "float64")
    if not blob.shape and has_legacy:
        blob.shape = tuple(blob.legacy)
    return blob


def _layer(buf, start: int, end: int, legacy: bool) -> Layer:
    name, kind, blobs, transpose = "", "", [], False
    for number, wire, a, b in iter_fields(buf, start, end, "LayerParameter"):
        if wire == LEN and number == (4 if legacy else 1):
            name = text(buf, a, b, "layer name")[:256]
        elif not legacy and number == 2 and wire == LEN:
            kind = text(buf, a, b, "layer type")[:64]
        elif legacy and number == 5 and wire == VARINT:
            kind = _V1_TYPES.get(a, f"V1 type {a}")
        elif wire == LEN and number == (6 if legacy else 7):
            blobs.append(_blob(buf, a, b))
            limits.check("MAX_TENSORS", len(blobs), "blobs in one layer")
        elif number == _INNER_PRODUCT_PARAM and wire == LEN:
            transpose = any(n == _TRANSPOSE and v for n, w, v, _ in iter_fields(buf, a, b, "InnerProductParameter")
                            if w == VARINT)
    return Layer(name, kind, blobs, transpose)


def _layers(buf) -> list[Layer]:
    layers = []
    for number, wire, a, b in iter_fields(buf, 0, len(buf), "NetParameter"):
        if wire == LEN and number in (_NET_LAYER, _NET_V1_LAYERS):
            layers.append(_layer(buf, a, b, legacy=number == _NET_V1_LAYERS))
            limits.check("MAX_TENSORS", len(layers), "layers")
    return layers


def _stored_shape(layer: Layer, blob: Blob) -> tuple[int, ...]:
    """Legacy InnerProduct weights are (1, 1, out, in): the matrix is the last two axes."""
    shape = blob.shape
    if layer.type == "InnerProduct" and len(shape) == 4 and shape[:2] == (1, 1):
        return shape[2:]
    return shape


class CaffeReader:
    def __init__(self, path: ModelPath):
        self._buf = map_whole(path)  # the layer walk spans the file: a remote one is read once
        try:
            self._layers = _layers(self._buf)
        except BaseException:
            self._buf.close()
            raise
        self._blobs: dict[str, tuple[Layer, Blob]] = {}
        for layer in self._layers:
            for i, blob in enumerate(layer.blobs):
                self._blobs[f"{layer.name}/{i}"] = (layer, blob)

    def tensors(self) -> list[TensorInfo]:
        infos, chosen = [], False
        for name, (layer, blob) in self._blobs.items():
            shape = _stored_shape(layer, blob)
            layout = _LAYOUTS.get(layer.type, "auto")
            if layout == "OI" and layer.transpose:
                layout = "IO"
            weight = name.endswith("/0") and layer.type in _LAYOUTS and len(shape) == len(layout)
            role = (f"weight of {'the first' if not chosen else 'a'} {layer.type} layer {layer.name!r} in layer order"
                    if weight else "a bias or a parameter of a layer without weights")
            chosen = chosen or weight
            infos.append(TensorInfo(name, shape, "float32" if not blob.values else blob.values[2],
                                    layout if weight else "auto", "CHW", role, weight))
        return infos

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._blobs:
            raise TensorNotFoundError(f"no blob {name[:200]!r}; blobs are named <layer>/<index>")
        layer, blob = self._blobs[name]
        if blob.values is None:
            raise CorruptFileError(f"blob {name!r} holds no packed data")
        start, end, dtype = blob.values
        shape = dtypes.check_fits(_stored_shape(layer, blob), dtype, end - start, f"blob {name!r}")
        if dtypes.nbytes(shape, dtype) != end - start:
            raise CorruptFileError(f"blob {name!r} declares {list(shape)} but holds {(end - start):,} bytes of {dtype}")
        return dtypes.native(dtypes.from_buffer(self._buf, dtype, shape, start), dtype)

    def close(self) -> None:
        self._buf.close()


def open(path: ModelPath) -> CaffeReader:  # noqa: A001 - the registry's verb
    return CaffeReader(model_path(path))
