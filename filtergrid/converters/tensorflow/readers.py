"""Readers for the three TensorFlow containers; they share a listing and the bundle/const decoding."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import re
from collections.abc import Callable

import numpy as np

from ... import dtypes, limits
from ...bank import Producer, TensorInfo
from ...errors import CorruptFileError, UnreadableFeatureError
from ...layout import CHANNELS_LAST
from ...safeio import (  # graphs are walked whole: a remote one is read once
    ModelPath,
    map_whole,
)
from ..base import lookup, natural_key, tensor_info
from ..protowire import LEN, VARINT, iter_fields, packed_varints, short_text
from . import SAVED_MODEL, objects, protos
from .bundle import OBJECT_GRAPH_KEY, Bundle, Entry, find_index
from .graph import FED, GraphParser, Hit, Node, Walk, layout

#: Training state stored next to the weights in TF1 checkpoints (optimizer slots, step counters).
_TRAINING_STATE = re.compile(r"(/|^)(Adam\w*|Momentum|RMSProp\w*|Adagrad\w*|Ftrl\w*|ExponentialMovingAverage|"
                             r"global_step|beta[12]_power|\.OPTIMIZER_SLOT|save_counter)(/|$)")


def open_path(path: ModelPath):
    if path.is_dir() and (path / SAVED_MODEL).is_file():
        return SavedModelReader(path / SAVED_MODEL)
    if path.name == SAVED_MODEL or (path.is_file() and _is_saved_model(path)):
        return SavedModelReader(path)
    if path.is_dir() or path.name.endswith(".index") or ".data-" in path.name:
        return CheckpointReader(find_index(path))
    return GraphDefReader(path)


def _is_saved_model(path: ModelPath) -> bool:
    from . import looks_like_saved_model

    with path.open("rb") as f:
        return looks_like_saved_model(f.read(64))


class _Listing:
    """Tensors in model order with a reader for each; unknown names are TensorNotFoundError."""

    def __init__(self) -> None:
        self._infos: list[TensorInfo] = []
        self._readers: dict[str, Callable[[], np.ndarray]] = {}

    def add(self, info: TensorInfo, read: Callable[[], np.ndarray]) -> None:
        if info.name not in self._readers:
            self._infos.append(info)
            self._readers[info.name] = read

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        return lookup(self._readers, name)()


def _weight_info(name: str, shape: tuple[int, ...], dtype: str, role: str, candidate: bool = True) -> TensorInfo:
    """A listed variable: channels-last layout by rank; biases and norms are never candidates."""
    info = tensor_info(name, shape, dtype, CHANNELS_LAST.layout_for(shape), "HWC", role)
    if not candidate or dtype not in dtypes.STORAGE:
        return dataclasses.replace(info, candidate=False)
    return info


def _hit_info(name: str, shape: tuple[int, ...], dtype: str, hit: Hit) -> TensorInfo:
    where = f" in function {hit.function}" if hit.function else ""
    stored = layout(hit, len(shape))
    via = " (through ExpandDims: a Conv1D)" if hit.expanded else ""
    if stored is None:
        return TensorInfo(name, shape, dtype, "auto", "HWC",
                          f"weight of {hit.op} node {hit.node!r}{where}, the first layer the input meets, "
                          f"in a layout filtergrid does not show", False)
    return TensorInfo(name, shape, dtype, stored, "HWC",
                      f"weight of the first {hit.op} node the input reaches in graph order "
                      f"({hit.node!r}{where}){via}", True)


class CheckpointReader(_Listing):
    """A tensor bundle: TF2 object-based (object graph order) or TF1 name-based (inferred order)."""

    def __init__(self, index: ModelPath, bundle: Bundle | None = None):
        super().__init__()
        self.bundle = bundle or Bundle(index)
        self._versions = ("", "")  # a TF1 checkpoint's .meta graph records them; the bundle does not
        try:
            self._list()
        except BaseException:
            self.bundle.close()
            raise

    def _read(self, entry: Entry) -> Callable[[], np.ndarray]:
        return lambda: self.bundle.read(entry)

    def _list(self) -> None:
        entries = self.bundle.entries
        if OBJECT_GRAPH_KEY in entries:
            nodes = objects.parse(self.bundle.read_string(entries[OBJECT_GRAPH_KEY]))
            self.add_in_object_order(nodes)
        else:
            self._add_name_based()
        for key, e in entries.items():
            if key != OBJECT_GRAPH_KEY:
                self.add(_weight_info(key, e.shape, e.dtype, "not reached from the model (training state)", False),
                         self._read(e))

    def producer(self) -> Producer | None:
        return _tensorflow_producer(self._versions)

    def add_in_object_order(self, nodes: list[objects.TrackedObject]) -> None:
        entries = self.bundle.entries
        shown = 0
        for key, path in objects.model_order(nodes):
            e = entries.get(key)
            if e is None:
                continue
            info = _weight_info(key, e.shape, e.dtype, f"variable {path} in the object graph's order "
                                f"(depth first from the root, layers in the order they were tracked)")
            if info.candidate and not shown:
                info = dataclasses.replace(info, role=f"first layer weight in the checkpoint's object graph "
                                                      f"({path}: depth first from the root, layers in tracking order)")
            shown += info.candidate
            self.add(info, self._read(e))

    def _add_from_meta(self) -> bool:
        """TF1: the ``PREFIX.meta`` graph saved beside the checkpoint, walked from its Placeholders."""
        meta = self.bundle.index.with_name(self.bundle.prefix + ".meta")
        if not meta.is_file():
            return False
        buf = map_whole(meta)
        try:
            parser = GraphParser(buf)
            self._versions = _tensorflow_versions(buf, (0, len(buf)))
            graph = protos.first(buf, (0, len(buf)), 2, "MetaGraphDef")
            nodes = parser.graph(graph) if graph else []
            hit = Walk(buf, parser.functions).first(nodes, _inputs(buf, nodes))
        finally:
            with contextlib.suppress(BufferError):
                buf.close()
        e = self.bundle.entries.get(hit.weight[1]) if hit and hit.weight and hit.weight[0] == "var" else None
        if e is None or hit is None:  # e is found only through a hit
            return False
        info = _hit_info(e.key, e.shape, e.dtype, hit)
        self.add(dataclasses.replace(info, role=f"{info.role}, in the graph saved beside it ({meta.name})"),
                 self._read(e))
        return True

    def _add_name_based(self) -> None:
        """TF1: no order is stored. Kernels whose input size is no other layer's output come first."""
        from_graph = self._add_from_meta()
        entries = [e for k, e in self.bundle.entries.items() if not _TRAINING_STATE.search(k)]
        weights = [e for e in entries if _weight_info(e.key, e.shape, e.dtype, "").candidate]
        outputs = {e.shape[-1] for e in weights}
        facing = [e for e in weights if e.shape[-2] not in outputs]
        ordered = sorted(facing, key=lambda e: natural_key(e.key))
        why = (f"TF1 name-based checkpoint (no layer order stored): {len(facing)} of {len(weights)} kernels take "
               f"an input size no other kernel outputs (input-facing); the first of those in natural name order")
        for rank, e in enumerate(ordered):
            role = why if rank == 0 and not from_graph else f"input-facing kernel #{rank + 1} in natural name order"
            self.add(_weight_info(e.key, e.shape, e.dtype, role), self._read(e))
        for e in sorted(entries, key=lambda e: natural_key(e.key)):
            self.add(_weight_info(e.key, e.shape, e.dtype, "a kernel that takes another layer's output "
                                  "(TF1 checkpoint, natural name order)"), self._read(e))

    def close(self) -> None:
        self.bundle.close()


class SavedModelReader(_Listing):
    """``saved_model.pb`` + ``variables/``: the graph picks the first layer, the bundle holds its values."""

    def __init__(self, pb: ModelPath):
        super().__init__()
        self._map = map_whole(pb)
        self.checkpoint: CheckpointReader | None = None
        try:
            self._open(pb)
        except BaseException:
            self.close()
            raise

    def _open(self, pb: ModelPath) -> None:
        buf = self._map
        meta = protos.first(buf, (0, len(buf)), 2, "SavedModel")
        if meta is None:
            raise CorruptFileError("the SavedModel holds no graph (no meta graph)")
        self._schema = protos.varint(buf, (0, len(buf)), 1, "SavedModel")
        self._versions = _tensorflow_versions(buf, meta)
        parser = GraphParser(buf)
        graph = protos.first(buf, meta, 2, "MetaGraphDef")
        nodes = parser.graph(graph) if graph else []
        index = pb.parent / "variables" / "variables.index"
        if index.is_file():
            self.checkpoint = CheckpointReader(index)
        walk = Walk(buf, parser.functions)
        walk.captures = _bound_inputs(buf, protos.first(buf, meta, 7, "MetaGraphDef"))
        hit = walk.first(nodes, {n: FED for n in _signature_inputs(buf, meta, nodes)})
        found = self._add_hit(hit, buf) if hit is not None else False
        checkpoint = self.checkpoint
        if checkpoint is not None:
            for info in checkpoint.tensors():
                if info.candidate:
                    info = dataclasses.replace(info, role=_after_hit(hit, found, info.role))
                self.add(info, functools.partial(checkpoint.read, info.name))

    def producer(self) -> Producer | None:
        return _tensorflow_producer(self._versions, f"SavedModel schema version {self._schema}")

    def _add_hit(self, hit: Hit, buf) -> bool:
        """List the hit's weight first; False when it is computed in the graph rather than stored."""
        weight, checkpoint = hit.weight, self.checkpoint
        if not weight:
            return False
        if weight[0] == "const":
            name, shape, dtype, read = _const(buf, weight[1])
            self.add(_hit_info(name, shape, dtype, hit), read)
            return True
        key = self._checkpoint_key(weight) if weight[0] in ("var", "object") else None
        if key is None or checkpoint is None or key not in checkpoint.bundle.entries:
            return False
        e = checkpoint.bundle.entries[key]
        self.add(_hit_info(key, e.shape, e.dtype, hit), lambda: checkpoint.read(key))
        return True

    def _checkpoint_key(self, weight: tuple) -> str | None:
        if self.checkpoint is None:
            return None
        entries = self.checkpoint.bundle.entries
        if weight[0] == "object" and OBJECT_GRAPH_KEY in entries:
            nodes = objects.parse(self.checkpoint.bundle.read_string(entries[OBJECT_GRAPH_KEY]))
            if 0 <= weight[1] < len(nodes):
                return objects.variable_key(nodes[weight[1]])
        if weight[0] == "var" and weight[1] in entries:
            return weight[1]
        return None

    def close(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.close()
        with contextlib.suppress(BufferError):
            self._map.close()


def _tensorflow_versions(buf, meta: tuple[int, int]) -> tuple[str, str]:
    """A MetaGraphDef's MetaInfoDef (1): tensorflow_version (5) and tensorflow_git_version (6)."""
    info = protos.first(buf, meta, 1, "MetaGraphDef")
    found = {5: "", 6: ""}
    for n, w, a, b in protos.fields(buf, info, "MetaInfoDef") if info else ():
        if n in found and w == LEN:
            found[n] = short_text(buf, a, b)
    return found[5], found[6]


def _tensorflow_producer(versions: tuple[str, str], format_version: str = "") -> Producer | None:
    version, git_version = versions
    return Producer.recorded("tensorflow" if version else "", version, format_version,
                             details=(f"git {git_version}" if git_version else "",))


def _after_hit(hit: Hit | None, found: bool, role: str) -> str:
    """The role of a variable listed after the graph's verdict on the first layer."""
    if hit is None:
        return f"{role}; no weight-bearing node fed by the input was found in the graph"
    if found:
        return f"later: {role}"
    return (f"{role}; the graph's first layer ({hit.op} node {hit.node!r}) takes a weight computed in the "
            f"graph, not stored as a variable, so the first variable in this order is offered instead")


def _signature_inputs(buf, meta: tuple[int, int], nodes: list[Node]) -> list[str]:
    """Placeholders that feed the model: the serving signature's inputs, else every Placeholder."""
    signatures = {}
    for n, w, a, b in protos.fields(buf, meta, "MetaGraphDef"):
        if n == 5 and w == LEN:
            key = protos.strings(buf, (a, b), 1, "signature name")
            value = protos.first(buf, (a, b), 2, "signature")
            if key and value:
                signatures[key[-1]] = value
    chosen = signatures.get("serving_default") or next(iter(signatures.values()), None)
    names = []
    if chosen is not None:
        for n, w, a, b in protos.fields(buf, chosen, "SignatureDef"):
            if n == 1 and w == LEN:
                info = protos.first(buf, (a, b), 2, "signature input")
                names += [s.split(":", 1)[0] for s in protos.strings(buf, info, 1, "tensor name")] if info else []
    return names or [name for name in _inputs(buf, nodes) if name != "saver_filename"]


def _inputs(buf, nodes: list[Node]) -> dict[str, tuple]:
    """The Placeholders that can be a model's input: numeric and not scalars (a training flag, a
    learning rate or a file name is fed too, but reaches layers only through switches and optimizers)."""
    seeds = {}
    for node in nodes:
        if node.op not in ("Placeholder", "PlaceholderWithDefault"):
            continue
        dtype = protos.dtype_name(protos.varint(buf, node.attrs["dtype"], 6, "dtype")) if "dtype" in node.attrs else ""
        span = node.attrs.get("shape")
        shape = protos.shape(buf, protos.first(buf, span, 7, "shape"), "shape") if span else None
        if dtype in dtypes.STORAGE and dtype != "bool" and shape != ():
            seeds[node.name] = FED
    return seeds


def _bound_inputs(buf, object_graph: tuple[int, int] | None) -> dict[str, list[int]]:
    """Concrete function name -> object graph node ids of its captured inputs (SavedObjectGraph)."""
    out: dict[str, list[int]] = {}
    if object_graph is None:
        return out
    for n, w, a, b in protos.fields(buf, object_graph, "SavedObjectGraph"):
        if n == 2 and w == LEN:
            name = protos.strings(buf, (a, b), 1, "concrete function name")
            value = protos.first(buf, (a, b), 2, "concrete function")
            if name and value:
                out[name[-1]] = protos.repeated_ints(buf, value, 2, "bound inputs")
    return out


class GraphDefReader(_Listing):
    """A frozen GraphDef: weights are Const nodes; the walk from the Placeholders picks the first."""

    def __init__(self, path: ModelPath):
        super().__init__()
        self._map = map_whole(path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        buf = self._map
        parser = GraphParser(buf)
        nodes = parser.graph((0, len(buf)))
        versions = protos.first(buf, (0, len(buf)), 4, "GraphDef")  # VersionDef: producer (1)
        self._graph_version = protos.varint(buf, versions, 1, "VersionDef") if versions else None
        if not nodes:
            raise CorruptFileError("the graph has no nodes")
        hit = Walk(buf, parser.functions).first(nodes, _inputs(buf, nodes))
        if hit is not None and hit.weight and hit.weight[0] == "const":
            name, shape, dtype, read = _const(buf, hit.weight[1])
            self.add(_hit_info(name, shape, dtype, hit), read)
        why = ("a constant after the first layer, in node order" if self._infos else
               "no weight-bearing node fed by a Placeholder was found: not chosen without --tensor")
        for node in nodes:
            if node.op == "Const":
                name, shape, dtype, read = _const(buf, node)
                self.add(_weight_info(name, shape, dtype, why, bool(self._infos)), read)

    def producer(self) -> Producer | None:
        """A GraphDef records only the version of the graph format its writer produced."""
        version = self._graph_version
        return Producer.recorded(format_version=f"GraphDef version {version}" if version is not None else "")

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._map.close()


#: TensorProto fields that hold values one by one, by dtype: (field number, how they are encoded).
_VALUE_FIELDS = {"float32": (5, "<f4"), "float64": (6, "<f8"), "int32": (7, "varint"), "int64": (10, "varint"),
                 "float16": (13, "varint16"), "bfloat16": (13, "varint16"), "int8": (7, "varint"),
                 "uint8": (7, "varint"), "int16": (7, "varint"), "uint16": (7, "varint")}


def _const(buf, node: Node) -> tuple[str, tuple[int, ...], str, Callable[[], np.ndarray]]:
    """A Const node's (name, shape, dtype, reader), from its ``value`` TensorProto."""
    span = node.attrs.get("value")
    tensor = protos.first(buf, span, 8, f"Const {node.name!r}") if span else None
    if tensor is None:
        return node.name, (), "unknown", lambda: _no_value(node.name)
    what = f"Const {node.name!r}"
    dtype = protos.dtype_name(protos.varint(buf, tensor, 1, what))
    shape = protos.shape(buf, protos.first(buf, tensor, 2, what), what)
    if shape is None:
        raise CorruptFileError(f"{what} has an unknown shape")
    return node.name, shape, dtype, lambda: _tensor_values(buf, tensor, dtype, shape, what)


def _no_value(name: str) -> np.ndarray:
    raise CorruptFileError(f"Const {name!r} has no value")


def _tensor_values(buf, tensor: tuple[int, int], dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    content = protos.first(buf, tensor, 4, what)
    if content is not None:
        a, b = content
        dims = dtypes.check_fits(shape, dtype, b - a, what)
        return dtypes.native(dtypes.from_buffer(bytes(buf[a:b]), dtype, dims), dtype)
    number, encoding = _VALUE_FIELDS.get(dtype, (0, ""))
    if not number:
        raise UnreadableFeatureError(f"{what} holds {dtype}, not numbers filtergrid decodes")
    count = math.prod(dtypes.check_shape(shape))
    values = _repeated(buf, tensor, number, encoding, what)
    if values.size == 1 and count > 1:  # TensorFlow repeats the last value: bounded by the file's size
        limits.check("MAX_TENSOR_BYTES", count * dtypes.itemsize(dtype), f"{what} splatted from one value")
        if count > len(buf):
            raise CorruptFileError(f"{what} repeats one value {count:,} times, more than the file's bytes")
        values = np.repeat(values, count)
    if values.size != count:
        raise CorruptFileError(f"{what} declares {list(shape)} but holds {values.size:,} values")
    if encoding == "varint16":
        values = values.astype("<u2").view(dtypes.STORAGE[dtype])
        return dtypes.native(values.reshape(shape), dtype)
    return values.astype(dtypes.STORAGE[dtype]).reshape(shape)


def _repeated(buf, tensor: tuple[int, int], number: int, encoding: str, what: str) -> np.ndarray:
    parts = []
    for n, w, a, b in iter_fields(buf, tensor[0], tensor[1], what):
        if n != number:
            continue
        if encoding in ("<f4", "<f8") and w == LEN:
            size = np.dtype(encoding).itemsize
            if (b - a) % size:
                raise CorruptFileError(f"{what}: packed values of {b - a} bytes")
            parts.append(np.frombuffer(bytes(buf[a:b]), encoding))
        elif encoding in ("<f4", "<f8"):
            parts.append(np.frombuffer(bytes(buf[a:b]), encoding))
        elif w == LEN:
            parts.append(packed_varints(buf, a, b, what))
        elif w == VARINT:
            parts.append(np.array([a], np.uint64).view(np.int64))
    return np.concatenate(parts) if parts else np.empty(0)
