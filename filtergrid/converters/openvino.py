"""OpenVINO IR: ``model.xml`` (the graph) + ``model.bin`` (the constants), without OpenVINO.

The XML lists layers and edges; ``Const`` layers name an extent of the ``.bin`` and an element
type. The first layer is the first ``Convolution``/``GroupConvolution``/``ConvolutionBackpropData``/
``MatMul`` in topological order whose data input depends on a ``Parameter`` and whose weight is a
constant. Compressed weights (f16, or u8/i8 behind ``Convert``/``Subtract``/``Multiply``, as
``save_model`` and NNCF write them) are evaluated from their constants with NumPy, exactly those op
types and nothing else, in float32 as OpenVINO's CPU plugin computes them. The XML is parsed with no DTD or entities allowed and bounded in size.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, FiltergridError, UnreadableFeatureError, UnsafeFileError
from ..safeio import (
    ModelPath,
    check_extent,
    map_readonly,
    model_path,
    resolve_inside,
    window,
)
from .base import Probe, not_found

#: OpenVINO element types -> filtergrid dtypes.
ELEMENT_TYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i8": "int8",
                 "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8", "u16": "uint16", "u32": "uint32",
                 "u64": "uint64", "boolean": "bool", "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2",
                 "f8e8m0": "float8_e8m0", "u1": "uint1", "u2": "uint2", "u4": "uint4", "i4": "int4", "nf4": "nf4",
                 "f4e2m1": "float4_e2m1", "u3": "uint3", "u6": "uint6"}
#: How sub-byte types are packed, as OpenVINO's CPU plugin decodes them: first element in the low bits
#: of a byte, except ``u1`` (high bit first) and ``u3``/``u6`` (3-byte groups, :func:`dtypes.unpack`).
_PACKING = {"uint1": "msb", "uint3": "split", "uint6": "split"}
#: Weight-bearing layer types: weight input index and layout by weight rank.
WEIGHT_OPS = {"Convolution": {3: "OIK", 4: "OIHW", 5: "OIDHW"}, "GroupConvolution": {5: "OIHW"},
              "ConvolutionBackpropData": {4: "IOHW"}, "MatMul": {2: "IO"}}
#: Element-wise ops a weight's decompression chain may use (evaluated with NumPy broadcasting).
_ARITHMETIC = {"Subtract": np.subtract, "Multiply": np.multiply, "Add": np.add}


def sniff(probe: Probe) -> bool:
    if probe.is_dir:
        return False
    if _is_ir(probe.head):
        return True
    # model.bin next to its model.xml: the bytes are raw constants, the sibling says what they are
    if probe.path.suffix.lower() != ".bin":
        return False
    sibling = _sibling(probe.path, ".xml")
    if not sibling.is_file():
        return False
    with sibling.open("rb") as f:
        return _is_ir(f.read(512))


def _is_ir(head: bytes) -> bool:
    start = head.lstrip()[:512]
    if start.startswith(b"<?xml"):
        start = start[start.find(b"?>") + 2:].lstrip()
    if start.startswith(b"<!DOCTYPE net"):  # an IR root with a DTD: claimed, so the reader refuses it by name
        return True
    return start.startswith(b"<net ") and b"version=" in start[:200]


def _sibling(path, suffix: str):
    """``model.bin`` -> ``model.xml`` (also for remote paths, which have no ``with_suffix``)."""
    return path.parent / (path.name[:len(path.name) - len(path.suffix)] + suffix)


def open(path: ModelPath) -> OpenVINOReader:
    path = model_path(path)
    xml_path = _sibling(path, ".xml") if path.suffix.lower() == ".bin" else path
    return OpenVINOReader(xml_path)


def _parse_xml(path: ModelPath) -> ET.Element:
    size = path.stat().st_size
    limits.check("MAX_HEADER_BYTES", size, "OpenVINO XML")
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeFileError("the XML declares a DTD or entities, which OpenVINO IR never uses")
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise CorruptFileError(f"malformed XML ({e})") from None


def _writer(root: ET.Element) -> Producer | None:
    """The IR version (``<net version>``) and what ``<rt_info>`` says wrote it: the runtime's version
    (``Runtime_version``, or ``MO_version`` of the older Model Optimizer), the source framework and NNCF."""
    info = root.find("rt_info")
    runtime, optimizer, framework, nncf = (_rt_value(info, tag) for tag in (
        "Runtime_version", "MO_version", "conversion_parameters/framework", "nncf/version"))
    return Producer.recorded("OpenVINO" if runtime or optimizer else "", runtime or optimizer,
                             f"IR version {root.get('version')}" if root.get("version") else "",
                             details=(f"converted from {framework}" if framework else "",
                                      "Model Optimizer" if optimizer and not runtime else "",
                                      f"compressed by NNCF {nncf}" if nncf else ""))


def _rt_value(info: ET.Element | None, tag: str) -> str:
    found = info.find(tag) if info is not None else None
    return found.get("value", "") if found is not None else ""


@dataclass(frozen=True)
class _Layer:
    id: str
    name: str
    type: str
    data: dict[str, str]
    inputs: list[str]  # input port ids in order
    position: int
    output_dims: tuple[str, ...]  # dims of output port 0 as the XML writes them


def _layers(root: ET.Element) -> dict[str, _Layer]:
    layers: dict[str, _Layer] = {}
    for k, el in enumerate(root.iterfind("layers/layer")):
        limits.check("MAX_TENSORS", k, "OpenVINO layers")
        data = el.find("data")
        ports = [p.get("id", "") for p in el.iterfind("input/port")]
        layer_id = el.get("id", "")
        if layer_id in layers:
            raise CorruptFileError(f"two layers have id {layer_id!r}")
        layers[layer_id] = _Layer(layer_id, el.get("name", "") or f"layer_{layer_id}", el.get("type", ""),
                                  dict(data.attrib) if data is not None else {}, ports, k,
                                  tuple(d.text or "" for d in el.iterfind("output/port[1]/dim")))
    return layers


def _edges(root: ET.Element, layers: dict[str, _Layer]) -> dict[str, list[str | None]]:
    """For each layer, the layer feeding each of its input ports (in port order)."""
    sources: dict[str, list[str | None]] = {i: [None] * len(layer.inputs) for i, layer in layers.items()}
    for k, edge in enumerate(root.iterfind("edges/edge")):
        limits.check("MAX_TENSORS", k, "OpenVINO edges")
        src, dst, port = edge.get("from-layer"), edge.get("to-layer"), edge.get("to-port")
        if src not in layers or dst not in layers or port not in layers[dst].inputs:
            raise CorruptFileError(f"edge {k} connects unknown layers or ports ({src} -> {dst}:{port})")
        sources[dst][layers[dst].inputs.index(port)] = src
    return sources


def _topological(layers: dict[str, _Layer], sources: dict[str, list[str | None]]) -> list[str]:
    """Layer ids in topological order, ties broken by file order (Kahn's algorithm)."""
    pending = {i: sum(s is not None for s in srcs) for i, srcs in sources.items()}
    users: dict[str, list[str]] = {i: [] for i in layers}
    for dst, srcs in sources.items():
        for src in srcs:
            if src is not None:
                users[src].append(dst)
    ready = [(layers[i].position, i) for i, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for user in users[i]:
            pending[user] -= 1
            if pending[user] == 0:
                heapq.heappush(ready, (layers[user].position, user))
    if len(order) != len(layers):
        raise CorruptFileError("the graph has a cycle")
    return order


@dataclass(frozen=True)
class _Weight:
    layer: str  # id of the layer whose output is the weight
    shape: tuple[int, ...]
    dtype: str  # element type of the stored constant at the root of the chain
    regroup: bool  # GroupConvolution: (G, O/G, I/G, kH, kW) read as (O, I/G, kH, kW)
    problem: str | None  # why the weight cannot be computed (an unsupported op or element type)


class OpenVINOReader:
    """The weights of an IR's weight-bearing layers, first layer first."""

    def __init__(self, xml_path: ModelPath):
        root = _parse_xml(xml_path)
        if root.tag != "net":
            raise CorruptFileError(f"the XML's root is <{root.tag[:40]}>, not <net>")
        self._written_by = _writer(root)
        self._layers = _layers(root)
        self._sources = _edges(root, self._layers)
        order = _topological(self._layers, self._sources)
        bin_path = resolve_inside(xml_path.parent, xml_path.with_suffix(".bin").name, "weights file")
        self._map = map_readonly(bin_path) if bin_path.is_file() else None
        self._weights: dict[str, _Weight] = {}
        self._infos = self._index(order)

    # -- the graph -------------------------------------------------------------------------------

    def _index(self, order: list[str]) -> list[TensorInfo]:
        dynamic: set[str] = set()
        infos: list[TensorInfo] = []
        for i in order:
            layer = self._layers[i]
            inputs = self._sources[i]
            if layer.type == "Parameter" or any(s in dynamic for s in inputs if s is not None):
                dynamic.add(i)
            if layer.type in WEIGHT_OPS and len(inputs) >= 2 and inputs[0] in dynamic and inputs[1] is not None \
                    and inputs[1] not in dynamic:
                infos.append(self._weight_info(layer, inputs[1], len(self._weights)))
        return infos

    def _weight_info(self, layer: _Layer, source: str, rank: int) -> TensorInfo:
        problem = None
        try:
            root, chain = self._chain_root(source)
            stored_shape, dtype = self._const_shape(self._layers[root])
        except CorruptFileError as e:  # stays the first layer; reading it refuses with the reason
            chain, dtype, problem = [], "unknown", e.reason
        shape = _declared_shape(self._layers[source]) if chain or problem else stored_shape
        name = self._layers[source].name
        regroup = layer.type == "GroupConvolution" and len(shape) == 5
        if regroup:
            g, o, i, kh, kw = shape
            shape = (g * o, i, kh, kw)
        layout = WEIGHT_OPS[layer.type].get(len(shape) + (1 if regroup else 0), "auto")
        if layer.type == "MatMul" and layer.data.get("transpose_b", "false").lower() == "true":
            layout = "OI"
        where = f"{layer.type} layer {layer.name!r}"
        why = (f"weight of the first {where} fed by the input" if rank == 0
               else f"weight of {where} (weight-bearing layer #{rank + 1})")
        if chain:
            why += f" ({dtype}, decompressed by {'/'.join(chain)})"
        if problem:
            why += f" (cannot be read: {problem})"
        candidate = layout != "auto"
        self._weights[name] = _Weight(source, shape, dtype, regroup, problem)
        return TensorInfo(name, shape, dtype, layout, "CHW", why if candidate else f"{why}; no layout for it", candidate)

    def _chain_root(self, layer_id: str) -> tuple[str, list[str]]:
        """The stored Const behind a weight and the op types between (Convert, Subtract, ...)."""
        chain: list[str] = []
        current = layer_id
        for _ in range(limits.MAX_NESTING):
            layer = self._layers[current]
            if layer.type == "Const":
                return current, chain
            source = self._sources[current][0] if self._sources[current] else None
            if layer.type not in ("Convert", "Reshape", "Gather", *_ARITHMETIC) or source is None:
                raise CorruptFileError(f"the weight {self._layers[layer_id].name!r} is computed by a "
                                       f"{layer.type[:40]} layer, which filtergrid does not evaluate")
            if layer.type not in chain:
                chain.insert(0, layer.type)
            current = source
        raise limits.exceeded("MAX_NESTING", "weight decompression chain longer than")

    def _const_shape(self, layer: _Layer) -> tuple[tuple[int, ...], str]:
        element = layer.data.get("element_type", "")
        dtype = ELEMENT_TYPES.get(element)
        if dtype is None:
            raise UnreadableFeatureError(f"Const {layer.name!r} has element type {element[:20]!r}, not supported")
        text = layer.data.get("shape")
        if text is None:  # a scalar is shape="": without the attribute the weight is unknown, not a scalar
            raise CorruptFileError(f"Const {layer.name!r} has no shape")
        try:
            shape = tuple(int(d) for d in text.split(",") if d.strip())
        except ValueError:
            raise CorruptFileError(f"Const {layer.name!r} has shape {text[:40]!r}") from None
        return dtypes.check_shape(shape), dtype

    # -- evaluating constants ---------------------------------------------------------------------

    def _const(self, layer: _Layer) -> np.ndarray:
        shape, dtype = self._const_shape(layer)
        if self._map is None:
            raise FiltergridError("the model's .bin file (its constants) is missing: it must lie beside the .xml, with the same name")
        try:
            offset, size = int(layer.data["offset"]), int(layer.data["size"])
        except (KeyError, ValueError):
            raise CorruptFileError(f"Const {layer.name!r} has no valid offset/size") from None
        check_extent(offset, size, len(self._map), f"Const {layer.name!r}")
        packed, order = dtype in dtypes.PACKED, _PACKING.get(dtype, "lsb")
        need = dtypes.packed_nbytes(shape, dtype, order) if packed else dtypes.nbytes(shape, dtype)
        if size != need:
            raise CorruptFileError(f"Const {layer.name!r}: {list(shape)} {dtype} needs {need:,} bytes, size says {size:,}")
        data = window(self._map, offset, size)
        if packed:
            stored = dtypes.unpack(data, dtype, shape, order)
        else:
            stored = dtypes.from_buffer(data, dtype, shape)
        return dtypes.native(stored, dtype)

    def _evaluate(self, layer_id: str, depth: int = 0, done: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The value of a constant subgraph of Const/Convert/Reshape/Gather/Subtract/Multiply/Add layers.

        ``done`` holds the layers already evaluated, so a layer several others share is computed once.
        """
        if depth > limits.MAX_NESTING:
            raise limits.exceeded("MAX_NESTING", "constant subgraph deeper than")
        done = {} if done is None else done
        if layer_id not in done:
            layer = self._layers[layer_id]
            if layer.type == "Const":
                done[layer_id] = self._const(layer)
            else:
                if any(s is None for s in self._sources[layer_id]):
                    raise CorruptFileError(f"{layer.type} layer {layer.name!r} has an unconnected input")
                done[layer_id] = _apply(layer, [self._evaluate(s, depth + 1, done)
                                                for s in self._sources[layer_id] if s is not None])
        return done[layer_id]

    # -- Reader ---------------------------------------------------------------------------------

    def producer(self) -> Producer | None:
        return self._written_by

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        """``rows`` is ignored (the contract allows it): a weight's decompression subgraph runs whole,
        its size bounded by ``MAX_TENSOR_BYTES``; first layers are small."""
        weight = self._weights.get(name)
        if weight is None:
            raise not_found(name)
        if weight.problem:
            raise CorruptFileError(weight.problem)
        try:
            value = self._evaluate(weight.layer)
        except ValueError as e:  # shapes that do not broadcast
            raise CorruptFileError(f"weight {name!r} cannot be computed ({e})") from None
        if weight.regroup and value.ndim == 5:
            value = value.reshape(weight.shape)
        if tuple(value.shape) != weight.shape:
            raise CorruptFileError(f"weight {name!r} computes to {list(value.shape)}, expected {list(weight.shape)}")
        return value

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()


def _apply(layer: _Layer, args: list[np.ndarray]) -> np.ndarray:
    """One decompression op on constant inputs, exactly as the IR's opset defines it."""
    if layer.type == "Convert" and len(args) == 1:
        return _convert(args[0], layer.data.get("destination_type", ""))
    if layer.type == "Reshape" and len(args) == 2:
        return _reshape(args[0], args[1], layer.data.get("special_zero", "false").lower() == "true")
    if layer.type == "Gather" and len(args) == 3:
        return _gather(args[0], args[1], args[2], layer.data.get("batch_dims", "0"))
    if layer.type in _ARITHMETIC and len(args) == 2:
        dtypes.check_shape(np.broadcast_shapes(args[0].shape, args[1].shape))
        with np.errstate(all="ignore"):
            return _ARITHMETIC[layer.type](*args)
    raise CorruptFileError(f"cannot evaluate a {layer.type[:40]} layer with {len(args)} inputs")


def _convert(value: np.ndarray, destination: str) -> np.ndarray:
    """``Convert``: to a float type rounded to its precision but kept in float32 (OpenVINO's CPU plugin
    computes decompression in float32); to an integer type only when no value changes (codebook indices)."""
    target = ELEMENT_TYPES.get(destination)
    if target in ("float16", "float32", "float64"):
        with np.errstate(over="ignore"):
            return dtypes.to_float32(dtypes.to_float32(value).astype(target))
    if target in dtypes.STORAGE and value.dtype.kind in "iu":
        converted = value.astype(dtypes.STORAGE[target])
        if np.array_equal(converted, value):
            return converted
    raise CorruptFileError(f"a weight converted from {value.dtype} to {target or repr(destination[:20])}")


def _gather(data: np.ndarray, indices: np.ndarray, axis: np.ndarray, batch_dims: str) -> np.ndarray:
    """``Gather`` from a 1-D codebook along axis 0 (NNCF codebook compression): a lookup table."""
    if data.ndim != 1 or axis.size != 1 or int(axis.reshape(-1)[0]) not in (0, -1) or batch_dims != "0":
        raise CorruptFileError(f"a weight gathered from a {list(data.shape)} table along axis "
                               f"{axis.reshape(-1)[:2].tolist()}: only 1-D codebooks are read")
    if indices.dtype.kind not in "iu" or (indices.size and int(indices.min()) < 0):
        raise CorruptFileError("a codebook gathered with negative or non-integer indices")
    return dtypes.lookup(indices, data)


def _declared_shape(layer: _Layer) -> tuple[int, ...]:
    """The output shape the XML declares for a computed weight (its chain may reshape)."""
    try:
        dims = [int(d) for d in layer.output_dims]
    except ValueError:
        raise CorruptFileError(f"layer {layer.name!r} declares output dims {list(layer.output_dims)[:8]}") from None
    return dtypes.check_shape(dims)


def _reshape(value: np.ndarray, target: np.ndarray, special_zero: bool) -> np.ndarray:
    """``Reshape`` as OpenVINO infers it: a 1-D target with at most one -1 (the elements left over);
    with ``special_zero`` a 0 copies the input's dimension at its index."""
    if target.ndim != 1:
        raise CorruptFileError(f"Reshape to a target of rank {target.ndim} (OpenVINO takes a 1-D shape)")
    written = [int(d) for d in target]
    dims = [value.shape[k] if special_zero and d == 0 and k < value.ndim else d for k, d in enumerate(written)]
    known = math.prod(d for d in dims if d != -1)
    if dims.count(-1) == 1 and known > 0 and value.size % known == 0:
        dims[dims.index(-1)] = value.size // known
    if min(dims, default=0) < 0 or math.prod(dims) != value.size:
        raise CorruptFileError(f"Reshape of {list(value.shape)} to {written[:8]}" + (" with special_zero" if special_zero else ""))
    return value.reshape(dims)
