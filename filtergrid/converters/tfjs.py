"""TensorFlow.js models: ``model.json`` (layers or graph model) and its binary weight shards.

``weightsManifest`` lists groups of weights; a group's shards, concatenated in order, hold its
weights back to back, each ``shape x`` the bytes of its stored type: the dtype, or the
quantization dtype (``uint8``/``uint16``: ``q * scale + min``; ``float16``). The order of layers
comes from ``modelTopology``: a Keras config (layers models) or a GraphDef as JSON (graph models),
walked from its Placeholders like TensorFlow's own graphs. Shard names stay inside the model's folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, UnreadableFeatureError, plain
from ..layout import CHANNELS_LAST
from ..safeio import ModelPath, check_extent, read_exact, resolve_inside
from .base import Probe, lookup, tensor_info
from .tensorflow.graph import FED, Node, Walk, layout

#: Keras layer class -> (weight name, layout) of its first-layer kernel.
KERNELS = {"Conv2D": ("kernel", "HWIO"), "Conv1D": ("kernel", "KIO"), "Dense": ("kernel", "IO"),
           "DepthwiseConv2D": ("depthwise_kernel", "HWIM"), "SeparableConv2D": ("depthwise_kernel", "HWIM"),
           "Conv2DTranspose": ("kernel", "HWOI"), "Embedding": ("embeddings", "matrix")}
#: Bytes of each stored element type a manifest may name.
_STORED = {"float32": "float32", "int32": "int32", "bool": "bool", "uint8": "uint8", "uint16": "uint16",
           "float16": "float16", "int8": "int8", "int16": "int16"}


def sniff(probe: Probe) -> bool:
    if probe.is_dir:
        model = probe.path / "model.json"
        return model.is_file() and _is_tfjs(model.open("rb").read(4096))
    return _is_tfjs(probe.head)


def _is_tfjs(head: bytes) -> bool:
    return head.lstrip().startswith(b"{") and (b'"weightsManifest"' in head or b'"modelTopology"' in head)


def open(path: ModelPath) -> TFJSReader:
    return TFJSReader(path / "model.json" if path.is_dir() else path)


@dataclass(frozen=True)
class _Weight:
    name: str
    shape: tuple[int, ...]
    dtype: str
    stored: str  # the dtype of the bytes (the quantization dtype when quantized)
    group: int
    offset: int
    scale: float | None
    minimum: float | None


class TFJSReader:
    def __init__(self, path: ModelPath):
        self.folder = path.parent
        limits.check("MAX_HEADER_BYTES", path.stat().st_size, "model.json")
        try:
            model = json.loads(path.read_bytes())
        except (ValueError, RecursionError) as e:
            raise CorruptFileError(f"model.json is not JSON: {plain(e)}") from None
        if not isinstance(model, dict) or not isinstance(model.get("weightsManifest"), list):
            raise CorruptFileError("model.json has no weightsManifest list")
        self._groups: list[list[ModelPath]] = []
        self._weights = self._manifest(model["weightsManifest"])
        self._infos = _listing(model.get("modelTopology"), self._weights, model.get("format", ""))

    def _manifest(self, manifest: list) -> dict[str, _Weight]:
        weights: dict[str, _Weight] = {}
        for g, group in enumerate(manifest):
            if not isinstance(group, dict) or not isinstance(group.get("paths"), list):
                raise CorruptFileError(f"weightsManifest group {g} has no paths list")
            limits.check("MAX_TENSORS", len(group["paths"]), "weight shards")
            self._groups.append([resolve_inside(self.folder, str(p), "weight shard") for p in group["paths"]])
            size = sum(p.stat().st_size if p.is_file() else 0 for p in self._groups[-1])
            offset = 0
            for w in group.get("weights", []):
                limits.check("MAX_TENSORS", len(weights) + 1, "weights")
                weight = _weight(w, g, offset)
                offset += dtypes.nbytes(weight.shape, weight.stored)
                check_extent(weight.offset, offset - weight.offset, size, f"weight {weight.name!r}")
                weights[weight.name] = weight
        return weights

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        w = lookup(self._weights, name)
        count = math.prod(dtypes.check_shape(w.shape))
        data = self._bytes(w.group, w.offset, count * dtypes.itemsize(w.stored))
        stored = np.frombuffer(data, dtypes.STORAGE[w.stored]).reshape(w.shape)
        if w.scale is not None and w.minimum is not None:  # set together; tfjs: q * scale + min, as an affine zero point of -min / scale
            return dtypes.dequantize(stored, w.scale, -w.minimum / w.scale if w.scale else 0.0)
        return dtypes.to_float32(stored) if w.stored != w.dtype else np.array(stored)

    def _bytes(self, group: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` of the group's shards laid end to end."""
        out = []
        for path in self._groups[group]:
            if not path.is_file():
                raise CorruptFileError(f"weight shard {path.name} is missing")
            size = path.stat().st_size
            if offset < size and length:
                take = min(length, size - offset)
                with path.open("rb") as f:
                    f.seek(offset)
                    out.append(read_exact(f, take, f"weight shard {path.name}"))
                length -= take
                offset = 0
            else:
                offset -= size
        if length:
            raise CorruptFileError("a weight runs past the end of its shards")
        return b"".join(out)

    def close(self) -> None:
        pass


def _weight(w, group: int, offset: int) -> _Weight:
    if not isinstance(w, dict) or not isinstance(w.get("name"), str):
        raise CorruptFileError("a weightsManifest entry has no name")
    name, dtype = w["name"], w.get("dtype", "float32")
    quant = w.get("quantization")
    if not isinstance(quant, dict):
        quant = {}
    stored = quant.get("dtype", dtype)
    if dtype not in _STORED or stored not in _STORED:
        raise UnreadableFeatureError(f"weight {name[:200]!r} is stored as {str(stored)[:40]}, which filtergrid does not read")
    shape = dtypes.check_shape(w.get("shape", []))
    scale = minimum = None
    if stored in ("uint8", "uint16"):
        try:
            scale, minimum = float(quant["scale"]), float(quant["min"])
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"weight {name[:200]!r} is quantized without a scale and min") from None
    return _Weight(name, shape, dtype, stored, group, offset, scale, minimum)


def _listing(topology, weights: dict[str, _Weight], fmt: str) -> list[TensorInfo]:
    """Weights in model order: the topology's first layer first, then the others in manifest order."""
    first: list[TensorInfo] = []
    if isinstance(topology, dict) and isinstance(topology.get("node"), list):
        first = _graph_first(topology["node"], weights)
    elif isinstance(topology, dict):
        first = _layers_in_order(topology.get("model_config", topology), weights, 0)
    listed = {i.name for i in first}
    why = "later in the weights manifest" if first else "weights manifest order (no layer order found)"
    rest = [tensor_info(w.name, w.shape, w.dtype, CHANNELS_LAST.layout_for(w.shape), "HWC", why)
            for w in weights.values() if w.name not in listed]
    if first:
        rest = [dataclasses.replace(i, candidate=False) if i.candidate else i for i in rest]
    return first + rest


def _layers_in_order(config, weights: dict[str, _Weight], depth: int) -> list[TensorInfo]:
    """Kernels of a Keras (layers model) config in its layer order, nested models included."""
    limits.check("MAX_NESTING", depth, "nested Keras models")
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    out = []
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        cls = layer.get("class_name")
        name = (layer.get("config") or {}).get("name", layer.get("name"))
        if cls in ("Sequential", "Functional", "Model"):
            out += _layers_in_order(layer, weights, depth + 1)
        elif cls in KERNELS and isinstance(name, str):
            key, stored = KERNELS[cls]
            w = weights.get(f"{name}/{key}")
            if w is not None:
                role = (f"{key} of the first weighted layer ({cls} {name!r}) in modelTopology's layer order"
                        if not out else f"{key} of {cls} {name!r}, layer order")
                out.append(TensorInfo(w.name, w.shape, w.dtype, stored, "HWC", role, True))
    return out


class _JSONWalk(Walk):
    """The graph walk over a GraphDef written as JSON (TF.js graph models): attributes are JSON."""

    def string(self, node: Node, name: str, number: int = 2) -> str:
        value = node.attrs.get(name)
        return value.get("s", "") if isinstance(value, dict) and number == 2 else ""

    def flag(self, node: Node, name: str) -> bool:
        value = node.attrs.get(name)
        return bool(isinstance(value, dict) and value.get("b"))


def _graph_first(nodes_json: list, weights: dict[str, _Weight]) -> list[TensorInfo]:
    limits.check("MAX_TENSORS", len(nodes_json), "graph nodes")
    nodes = []
    for n in nodes_json:
        if isinstance(n, dict) and isinstance(n.get("name"), str) and isinstance(n.get("op"), str):
            inputs = [i for i in n.get("input", []) if isinstance(i, str)]
            attrs = n.get("attr")
            if not isinstance(attrs, dict):
                attrs = {}
            nodes.append(Node(n["name"], n["op"], inputs, attrs))
    seeds = {n.name: FED for n in nodes if n.op == "Placeholder"}
    hit = _JSONWalk(None, {}).first(nodes, seeds)
    w = weights.get(hit.weight[1].name) if hit and hit.weight and hit.weight[0] == "const" else None
    if w is None or hit is None:  # w is found only through a hit
        return []
    stored = layout(hit, len(w.shape)) or "auto"
    role = f"weight of the first {hit.op} node the input reaches in graph order ({hit.node!r})"
    return [TensorInfo(w.name, w.shape, w.dtype, stored, "HWC", role, stored != "auto")]
