"""ONNX: the weight of the first Conv/Gemm/MatMul node, found without loading the model.

``onnx.load`` parses every initializer into memory and cannot read models over 2 GiB. Here the
ModelProto is walked on the wire over an ``mmap`` (see :mod:`.protowire`): node op types and input
names are collected in graph order, each tensor is remembered as byte spans, and only the tensor
asked for is decoded. Weights are followed back through Identity, Cast, Transpose and
DequantizeLinear nodes, and into If/Loop/Scan bodies where those nodes sit. External data is read
only from files inside the model's folder.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, LimitError, UnsafeFileError
from ..layout import CHANNELS_FIRST, LAYOUTS
from ..safeio import check_extent, resolve_inside
from .base import Probe, is_weight, lookup
from .protowire import I32, I64, LEN, MAX_VARINT_BYTES, VARINT, iter_fields, packed_varints, read_varint, signed, text

#: TensorProto.DataType codes filtergrid decodes, in the vocabulary of :mod:`filtergrid.dtypes`.
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
               17: "float8_e4m3fn", 19: "float8_e5m2"}
#: Codes listed by name but not decoded.
_UNDECODED = {8: "string", 14: "complex64", 15: "complex128", 18: "float8_e4m3fnuz",
              20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1", 24: "float8_e8m0",
              25: "uint2", 26: "int2", 27: "float6_e2m3", 28: "float6_e3m2"}
#: Types whose values are bit patterns (NumPy has no such dtype): read() returns them as float32.
_BIT_PATTERNS = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}

# TensorProto fields holding values when there is no raw_data, and the types each serves.
_FLOAT_DATA, _INT32_DATA, _INT64_DATA, _DOUBLE_DATA, _UINT64_DATA = 4, 5, 7, 10, 11
_TYPED_FIELDS = (_FLOAT_DATA, _INT32_DATA, _INT64_DATA, _DOUBLE_DATA, _UINT64_DATA)
_FIELD_OF = {"float32": _FLOAT_DATA, "float64": _DOUBLE_DATA, "int64": _INT64_DATA,
             "uint32": _UINT64_DATA, "uint64": _UINT64_DATA}
_FIXED_DTYPE = {_FLOAT_DATA: np.dtype("<f4"), _DOUBLE_DATA: np.dtype("<f8")}

#: Nodes, names and values the walk may keep per allowed tensor (bounds memory on hostile graphs).
_ITEMS_PER_TENSOR = 4
#: Longest dims list read (check_shape refuses rank > 8 when a tensor is decoded).
_MAX_DIMS = 64
#: Attribute ints kept (only short ones matter: perm, transB, axis, block_size).
_MAX_INTS = 64

#: The standard operator domains (``ai.onnx`` may also be written as the empty string).
_STANDARD_DOMAINS = ("", "ai.onnx")


def type_name(code: int) -> str:
    return ONNX_DTYPES.get(code) or _UNDECODED.get(code) or f"onnx type {code}"


# ---------------------------------------------------------------------------------------------
# The model as byte spans


@dataclass
class StoredTensor:
    """A TensorProto remembered by where its bytes are, not by its values."""

    name: str
    dims: tuple[int, ...]
    data_type: int
    raw: tuple[int, int] | None = None
    typed: list[tuple[int, int, int, int]] = field(default_factory=list)
    external: dict[str, str] | None = None
    sparse: tuple[StoredTensor, StoredTensor] | None = None  # (values, indices) of a SparseTensorProto


@dataclass
class Attribute:
    ints: list[int] = field(default_factory=list)
    tensor: StoredTensor | None = None
    graphs: list[Graph] = field(default_factory=list)


@dataclass
class Node:
    op_type: str = ""
    domain: str = ""
    overload: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attributes: dict[str, Attribute] = field(default_factory=dict)
    subgraphs: list[Graph] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.op_type} node {self.name!r}" if self.name else \
            f"{self.op_type} node (output {self.outputs[0] if self.outputs else '?'!r})"

    def int_attribute(self, name: str, default: int) -> int:
        attr = self.attributes.get(name)
        return attr.ints[-1] if attr and attr.ints else default


@dataclass
class Graph:
    name: str = ""
    nodes: list[Node] = field(default_factory=list)
    initializers: list[StoredTensor] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # a model-local function's formal inputs


#: A model-local function is called by a node whose (domain, op_type, overload) is its key.
FunctionKey = tuple[str, str, str]


class _Parser:
    """Reads ModelProto -> GraphProto -> NodeProto/TensorProto spans, counting what it keeps."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.tensors: list[StoredTensor] = []  # initializers and Constant values, in storage order
        self.functions: dict[FunctionKey, Graph] = {}
        self.kept = 0

    def count(self, n: int = 1) -> None:
        """Bound the nodes, names and values kept, whatever the file declares."""
        self.kept += n
        if self.kept > _ITEMS_PER_TENSOR * limits.MAX_TENSORS:
            raise LimitError(f"model structure holds more than {_ITEMS_PER_TENSOR} x MAX_TENSORS="
                             f"{limits.MAX_TENSORS:,} nodes, names and values")

    def model(self) -> Graph:
        graph = None
        for number, wire, a, b in iter_fields(self.buf, 0, len(self.buf), "ModelProto"):
            if number == 7 and wire == LEN:
                graph = (a, b)
            elif number == 25 and wire == LEN:
                self.function(a, b)
        if graph is None:
            raise CorruptFileError("ModelProto has no graph (field 7)")
        return self.graph(*graph, depth=0)

    def function(self, start: int, end: int) -> None:
        """A FunctionProto, kept as a graph of its nodes with its formal inputs."""
        g, domain, overload = Graph(), "", ""
        for number, wire, a, b in iter_fields(self.buf, start, end, "FunctionProto"):
            if wire != LEN:
                continue
            if number == 1:
                g.name = text(self.buf, a, b, "FunctionProto.name")
            elif number == 4:
                self.count()
                g.inputs.append(text(self.buf, a, b, "FunctionProto.input"))
            elif number == 7:
                g.nodes.append(self.node(a, b, depth=1))
            elif number == 10:
                domain = text(self.buf, a, b, "FunctionProto.domain")
            elif number == 13:
                overload = text(self.buf, a, b, "FunctionProto.overload")
        self.functions[(domain, g.name, overload)] = g

    def graph(self, start: int, end: int, depth: int) -> Graph:
        if depth > limits.MAX_NESTING:
            raise LimitError(f"subgraphs nest deeper than MAX_NESTING={limits.MAX_NESTING}")
        g = Graph()
        for number, wire, a, b in iter_fields(self.buf, start, end, "GraphProto"):
            if wire != LEN:
                continue
            if number == 1:
                g.nodes.append(self.node(a, b, depth))
            elif number == 2:
                g.name = text(self.buf, a, b, "GraphProto.name")
            elif number == 5:
                g.initializers.append(self.keep(self.tensor(a, b, "GraphProto.initializer")))
            elif number == 15:
                g.initializers.append(self.keep(self.sparse_tensor(a, b)))
        return g

    def keep(self, tensor: StoredTensor) -> StoredTensor:
        self.tensors.append(tensor)
        if len(self.tensors) > limits.MAX_TENSORS:
            raise LimitError(f"model has more than MAX_TENSORS={limits.MAX_TENSORS:,} tensors")
        return tensor

    def node(self, start: int, end: int, depth: int) -> Node:
        n = Node()
        for number, wire, a, b in iter_fields(self.buf, start, end, "NodeProto"):
            if wire != LEN:
                continue
            self.count()
            if number == 1:
                n.inputs.append(text(self.buf, a, b, "NodeProto.input"))
            elif number == 2:
                n.outputs.append(text(self.buf, a, b, "NodeProto.output"))
            elif number == 3:
                n.name = text(self.buf, a, b, "NodeProto.name")
            elif number == 4:
                n.op_type = text(self.buf, a, b, "NodeProto.op_type")
            elif number == 7:
                n.domain = text(self.buf, a, b, "NodeProto.domain")
            elif number == 8:
                n.overload = text(self.buf, a, b, "NodeProto.overload")
            elif number == 5:
                name, attribute = self.attribute(a, b, depth)
                n.attributes[name] = attribute
        value = n.attributes.get("value")
        if n.op_type == "Constant" and value and value.tensor and n.outputs:
            value.tensor.name = n.outputs[0]
            self.keep(value.tensor)
        if any(attr.graphs for attr in n.attributes.values()):
            # an If's then_branch before its else_branch, whatever order the attributes are stored
            # in (onnx.helper sorts them by name); other subgraphs in stored order
            ordered = sorted(n.attributes.items(), key=lambda item: item[0] != "then_branch")
            n.subgraphs = [g for _, attr in ordered for g in attr.graphs]
        return n

    def attribute(self, start: int, end: int, depth: int) -> tuple[str, Attribute]:
        name, attr = "", Attribute()
        for number, wire, a, b in iter_fields(self.buf, start, end, "AttributeProto"):
            if number == 1 and wire == LEN:
                name = text(self.buf, a, b, "AttributeProto.name")
            elif number in (3, 8) and wire == VARINT and len(attr.ints) < _MAX_INTS:  # i, or one of ints
                attr.ints.append(signed(a))
            elif number == 8 and wire == LEN and b - a <= _MAX_INTS * MAX_VARINT_BYTES:
                attr.ints.extend(int(v) for v in packed_varints(self.buf, a, b, "AttributeProto.ints"))
            elif number == 5 and wire == LEN:
                attr.tensor = self.tensor(a, b, "AttributeProto.t")
            elif number in (6, 11) and wire == LEN:
                attr.graphs.append(self.graph(a, b, depth + 1))
        return name, attr

    def tensor(self, start: int, end: int, what: str) -> StoredTensor:
        dims: list[int] = []
        t = StoredTensor("", (), 0)
        external: list[tuple[int, int]] = []
        location = 0
        for number, wire, a, b in iter_fields(self.buf, start, end, what):
            if number == 1:
                dims.extend(self.varints(wire, a, b, f"{what}.dims"))
            elif number == 2 and wire == VARINT:
                t.data_type = a
            elif number == 8 and wire == LEN:
                t.name = text(self.buf, a, b, f"{what}.name")
            elif number == 9 and wire == LEN:
                t.raw = (a, b)
            elif number in _TYPED_FIELDS:
                self.count()
                t.typed.append((number, wire, a, b))
            elif number == 13 and wire == LEN:
                external.append((a, b))
            elif number == 14 and wire == VARINT:
                location = a
        if len(dims) > _MAX_DIMS:
            raise CorruptFileError(f"{what} has {len(dims)} dims")
        t.dims = tuple(signed(d) for d in dims)
        if location == 1:
            t.external = dict(self.entry(a, b) for a, b in external)
        return t

    def varints(self, wire: int, a: int, b: int, what: str) -> list[int]:
        """Dims, packed or not (a shape has few of them, so a long list is refused unread)."""
        self.count()
        if wire == VARINT:
            return [a]
        if wire == LEN and b - a <= _MAX_DIMS * MAX_VARINT_BYTES:
            return [int(v) for v in packed_varints(self.buf, a, b, what)]
        raise CorruptFileError(f"{what} is not a short list of varints (wire type {wire}, {b - a:,} bytes)")

    def entry(self, start: int, end: int) -> tuple[str, str]:
        key = value = ""
        for number, wire, a, b in iter_fields(self.buf, start, end, "StringStringEntryProto"):
            if number == 1 and wire == LEN:
                key = text(self.buf, a, b, "external_data key")
            elif number == 2 and wire == LEN:
                value = text(self.buf, a, b, "external_data value")
        return key, value

    def sparse_tensor(self, start: int, end: int) -> StoredTensor:
        values = indices = None
        dims: list[int] = []
        for number, wire, a, b in iter_fields(self.buf, start, end, "SparseTensorProto"):
            if number == 1 and wire == LEN:
                values = self.tensor(a, b, "SparseTensorProto.values")
            elif number == 2 and wire == LEN:
                indices = self.tensor(a, b, "SparseTensorProto.indices")
            elif number == 3:
                dims.extend(self.varints(wire, a, b, "SparseTensorProto.dims"))
        if values is None or indices is None:
            raise CorruptFileError("SparseTensorProto lacks its values or indices")
        return StoredTensor(values.name, tuple(signed(d) for d in dims), values.data_type,
                            sparse=(values, indices))


# ---------------------------------------------------------------------------------------------
# Which tensor is the first layer's weight


@dataclass(frozen=True)
class WeightOp:
    """Where an operator takes its weight, how that weight is laid out, how it is quantized."""

    weight: int
    kind: str  # conv | transposed | gemm | matmul
    scale: int | None = None
    zero_point: int | None = None
    quant_axis: int = 0  # the axis per-channel scales run along (output channels)


WEIGHT_OPS = {
    "Conv": WeightOp(1, "conv"),
    "ConvTranspose": WeightOp(1, "transposed"),
    "Gemm": WeightOp(1, "gemm"),
    "MatMul": WeightOp(1, "matmul"),
    "QLinearConv": WeightOp(3, "conv", scale=4, zero_point=5),
    "ConvInteger": WeightOp(1, "conv", zero_point=3),
    "MatMulInteger": WeightOp(1, "matmul", zero_point=3, quant_axis=-1),
    "QLinearMatMul": WeightOp(3, "matmul", scale=4, zero_point=5, quant_axis=-1),
}

_CONV_LAYOUTS = {3: "OIK", 4: "OIHW", 5: "OIDHW"}


def weight_layout(op: WeightOp, node: Node, rank: int) -> str:
    """The stored layout the operator's definition gives its weight."""
    if op.kind == "conv":
        return _CONV_LAYOUTS.get(rank, "auto")
    if op.kind == "transposed":
        return "IOHW" if rank == 4 else "auto"
    if rank != 2:
        return "auto"
    if op.kind == "gemm":
        return "OI" if node.int_attribute("transB", 0) else "IO"
    return "IO"


@dataclass(frozen=True)
class Quantization:
    scale: StoredTensor | None
    zero_point: StoredTensor | None
    axis: int
    how: str


@dataclass
class Traced:
    """A constant tensor a weight input comes from, and what lies between them."""

    tensor: StoredTensor
    quant: Quantization | None = None
    perms: list[list[int] | None] = field(default_factory=list)  # Transposes, consumer side first
    via: list[str] = field(default_factory=list)


class _Scope:
    """Names visible in one graph: its constants and producers, then the enclosing graph's.

    A function body sees nothing of its caller but its inputs: ``arguments`` maps each formal
    input to the caller's value.
    """

    def __init__(self, graph: Graph, parent: _Scope | None, arguments: dict[str, str] | None = None) -> None:
        self.parent = parent
        self.arguments = arguments
        self.constants = {t.name: t for t in graph.initializers}
        self.producers: dict[str, Node] = {}
        for node in graph.nodes:
            for out in node.outputs:
                self.producers[out] = node
            value = node.attributes.get("value")
            if node.op_type == "Constant" and value and value.tensor and node.outputs:
                self.constants[node.outputs[0]] = value.tensor

    def find(self, name: str) -> tuple[StoredTensor | None, Node | None]:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.constants:
                return scope.constants[name], None
            if name in scope.producers:
                return None, scope.producers[name]
            if scope.arguments is not None:
                if name not in scope.arguments or scope.parent is None:
                    return None, None
                name = scope.arguments[name]
            scope = scope.parent
        return None, None


@dataclass
class _Use:
    """A tensor consumed by a node: as its weight (``weight`` set, ``role`` says where) or otherwise."""

    tensor: StoredTensor
    role: str
    weight: tuple[Traced, WeightOp, Node] | None = None


class _Walk:
    """Visits nodes in graph order, descending into subgraphs where their node sits."""

    def __init__(self, functions: dict[FunctionKey, Graph]) -> None:
        self.uses: list[_Use] = []
        self.functions = functions
        self.calls = 0  # depth of function calls being walked
        self.visits = 0  # nodes walked, counting a function's body once per call

    def graph(self, graph: Graph, parent: _Scope | None, scope: _Scope | None = None) -> None:
        scope = scope or _Scope(graph, parent)
        kind = "function" if scope.arguments is not None else "subgraph"
        where = "" if parent is None else f" in {kind} {graph.name!r}"
        self.visits += len(graph.nodes)
        if self.visits > _ITEMS_PER_TENSOR * limits.MAX_TENSORS:  # functions calling functions many times
            raise LimitError(f"walking the graph visits more than {_ITEMS_PER_TENSOR} x MAX_TENSORS nodes")
        for node in graph.nodes:
            op = WEIGHT_OPS.get(node.op_type) if node.domain in _STANDARD_DOMAINS else None
            if op is not None:
                traced = self.weight(node, op, scope)
                if traced is not None:
                    self.uses.append(_Use(traced.tensor, where, (traced, op, node)))
            for i, value in enumerate(node.inputs):
                tensor, _ = scope.find(value) if value else (None, None)
                if tensor is not None:
                    self.uses.append(_Use(tensor, f"input {i} of {node.label}{where}"))
            for sub in node.subgraphs:
                self.graph(sub, scope)
            function = self.functions.get((node.domain, node.op_type, node.overload))
            if function is not None:
                self.call(function, node, scope)

    def call(self, function: Graph, node: Node, scope: _Scope) -> None:
        """Walk a model-local function's body where the node that calls it sits."""
        if self.calls >= limits.MAX_NESTING:
            raise LimitError(f"model-local functions call each other deeper than MAX_NESTING={limits.MAX_NESTING}")
        self.calls += 1
        arguments = dict(zip(function.inputs, node.inputs, strict=False))  # trailing inputs are optional
        self.graph(function, scope, _Scope(function, scope, arguments))
        self.calls -= 1

    def weight(self, node: Node, op: WeightOp, scope: _Scope) -> Traced | None:
        if len(node.inputs) <= op.weight or not node.inputs[op.weight]:
            return None
        traced = self.trace(node.inputs[op.weight], scope)
        if traced is None or op.scale is None and op.zero_point is None:
            return traced
        if traced.quant is not None:
            return None
        scale = self.constant(node.inputs, op.scale, scope)
        zero = self.constant(node.inputs, op.zero_point, scope)
        traced.quant = Quantization(scale, zero, op.quant_axis, "dequantized with its scale and zero point")
        return traced

    def trace(self, value: str, scope: _Scope) -> Traced | None:
        """The constant behind ``value``, through Identity, Cast, Transpose and DequantizeLinear."""
        perms: list[list[int] | None] = []
        via: list[str] = []
        for _ in range(limits.MAX_NESTING):
            tensor, producer = scope.find(value)
            if tensor is not None:
                return Traced(tensor, None, perms, via)
            if producer is None or not producer.inputs or producer.domain not in _STANDARD_DOMAINS:
                return None
            via.append(producer.label)
            if producer.op_type == "DequantizeLinear":
                q, _ = scope.find(producer.inputs[0])
                if q is None:
                    return None
                quant = Quantization(self.constant(producer.inputs, 1, scope),
                                     self.constant(producer.inputs, 2, scope),
                                     producer.int_attribute("axis", 1),
                                     "dequantized")  # blocked scales (block_size) are refused when read
                return Traced(q, quant, perms, via)
            if producer.op_type == "Transpose":
                attr = producer.attributes.get("perm")
                perms.append(list(attr.ints) if attr else None)
            elif producer.op_type not in ("Identity", "Cast"):
                return None
            value = producer.inputs[0]
        return None

    @staticmethod
    def constant(inputs: list[str], index: int | None, scope: _Scope) -> StoredTensor | None:
        if index is None or index >= len(inputs) or not inputs[index]:
            return None
        return scope.find(inputs[index])[0]


def stored_layout(consumer_layout: str, perms: list[list[int] | None], rank: int) -> str:
    """The layout of a tensor that reaches its consumer through Transposes (``auto`` if unnamed)."""
    if consumer_layout not in LAYOUTS or LAYOUTS[consumer_layout][0] != rank:
        return consumer_layout if not perms else "auto"
    axis_of = list(range(rank))  # consumer axis k is stored axis axis_of[k]
    for perm in perms:
        perm = list(reversed(range(rank))) if perm is None else perm
        if sorted(perm) != list(range(rank)):
            return "auto"
        axis_of = [perm[a] for a in axis_of]
    letters = [""] * rank
    for k, axis in enumerate(axis_of):
        letters[axis] = consumer_layout[k]
    name = "".join(letters)
    return name if name in LAYOUTS else "auto"


# ---------------------------------------------------------------------------------------------
# The reader


@dataclass(frozen=True)
class _Entry:
    info: TensorInfo
    tensor: StoredTensor
    quant: Quantization | None


class OnnxReader:
    def __init__(self, path: Path) -> None:
        self.folder = path.parent
        try:
            with path.open("rb") as f:
                self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except IsADirectoryError:
            raise CorruptFileError("an ONNX model is a file, not a folder") from None
        except ValueError:
            raise CorruptFileError("empty file") from None
        try:
            parser = _Parser(self.mm)
            graph = parser.model()
            walk = _Walk(parser.functions)
            walk.graph(graph, None)
            self.entries = self._listing(walk.uses, parser.tensors)
        except BaseException:
            self.mm.close()
            raise

    def _listing(self, uses: list[_Use], everything: list[StoredTensor]) -> dict[str, _Entry]:
        """Tensors in the order nodes consume them, each weight at the node it is the weight of."""
        weights = {id(u.tensor) for u in uses if u.weight}
        entries: dict[str, _Entry] = {}
        placed: set[int] = set()
        repeats: dict[str, int] = {}  # names used more than once (one per subgraph) get #2, #3, ...
        seen_weight = False

        def place(tensor: StoredTensor, layout: str, role: str, candidate: bool,
                  quant: Quantization | None = None) -> None:
            name = base = tensor.name or "(unnamed)"
            while name in entries:
                repeats[base] = repeats.get(base, 1) + 1
                name = f"{base}#{repeats[base]}"
            info = TensorInfo(name, tensor.dims, type_name(tensor.data_type), layout, CHANNELS_FIRST.flatten, role,
                              candidate)
            entries[name] = _Entry(info, tensor, quant)
            placed.add(id(tensor))

        for use in uses:
            key = id(use.tensor)
            if key in placed or (use.weight is None and key in weights):
                continue
            t = use.tensor
            if use.weight is None:
                place(t, "auto", use.role, False)
                continue
            traced, op, node = use.weight
            role = f"weight of the {'' if seen_weight else 'first '}{node.label}{use.role}"
            seen_weight = True
            if traced.via:
                role += f", through {' <- '.join(traced.via)}"
            if traced.quant:
                role += f" ({traced.quant.how})"
            layout = stored_layout(weight_layout(op, node, len(t.dims)), traced.perms, len(t.dims))
            place(t, layout, role, True, traced.quant)
        for t in everything:
            if id(t) not in placed:
                place(t, "auto", "not consumed by any node", False)
        if not seen_weight:  # no weight could be traced (reshaped or computed): offer matrices by name
            for name, e in entries.items():
                if is_weight(name, e.info.shape):
                    role = f"rank-{len(e.info.shape)} tensor (no Conv/Gemm/MatMul weight could be traced to a constant)"
                    entries[name] = _Entry(dataclasses.replace(e.info, role=role, candidate=True), e.tensor, e.quant)
        return entries

    def tensors(self) -> list[TensorInfo]:
        return [e.info for e in self.entries.values()]

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        entry = lookup(self.entries, name)
        values = self._decode(entry.tensor, rows)
        if entry.quant is None:
            return values
        return self._dequantize(values, entry.quant, name, rows)

    def close(self) -> None:
        self.mm.close()

    # -- decoding one tensor ------------------------------------------------------------------

    def _decode(self, t: StoredTensor, rows: int | None = None) -> np.ndarray:
        dtype = ONNX_DTYPES.get(t.data_type)
        if dtype is None:
            raise CorruptFileError(f"tensor {t.name!r} has element type {type_name(t.data_type)}, which filtergrid "
                                   "cannot decode")
        if any(d < 0 for d in t.dims):
            raise CorruptFileError(f"tensor {t.name!r} has negative dims {list(t.dims)}")
        if t.sparse is not None:
            return self._densify(t, dtype)
        count = math.prod(t.dims)
        shape = t.dims if rows is None or not t.dims or rows >= t.dims[0] else (rows, *t.dims[1:])
        dtypes.check_shape(shape)
        wanted = math.prod(shape)
        need = count * dtypes.itemsize(dtype)
        what = f"tensor {t.name!r}"
        if t.external is not None:
            data = self._external(t, need, wanted * dtypes.itemsize(dtype))
            stored = np.frombuffer(data, dtypes.STORAGE[dtype], count=wanted)
        elif t.raw is not None:
            start, end = t.raw
            if end - start != need:
                raise CorruptFileError(f"{what} declares {list(t.dims)} {dtype} = {need:,} bytes but its raw_data has "
                                       f"{end - start:,}")
            stored = np.frombuffer(self.mm, dtypes.STORAGE[dtype], count=wanted, offset=start).copy()
        else:
            stored = self._typed(t, dtype, count)[:wanted]
        stored = stored.reshape(shape)
        return dtypes.to_float32(stored, dtype) if dtype in _BIT_PATTERNS else stored

    def _typed(self, t: StoredTensor, dtype: str, count: int) -> np.ndarray:
        """Values kept in float_data/int32_data/int64_data/double_data/uint64_data (no raw_data)."""
        number = _FIELD_OF.get(dtype, _INT32_DATA)
        chunks = [c for c in t.typed if c[0] == number]
        what = f"tensor {t.name!r} field {number}"
        if count and not chunks:
            raise CorruptFileError(f"tensor {t.name!r} declares {list(t.dims)} but holds no values")
        if number in _FIXED_DTYPE:
            fixed = _FIXED_DTYPE[number]
            size = sum(b - a for _, wire, a, b in chunks if wire in (LEN, I32, I64))
            if size != count * fixed.itemsize or any(w == VARINT for _, w, _, _ in chunks):
                raise CorruptFileError(f"{what} holds {size:,} bytes, {list(t.dims)} {dtype} needs "
                                       f"{count * fixed.itemsize:,}")
            parts = [np.frombuffer(self.mm, fixed, count=(b - a) // fixed.itemsize, offset=a).copy()
                     for _, _, a, b in chunks]
        else:
            size = sum(b - a for _, wire, a, b in chunks if wire == LEN)
            if size > 10 * count:  # varints take 1..10 bytes each: refuse before decoding
                raise CorruptFileError(f"{what} holds {size:,} bytes, too many for {count:,} values")
            parts = [packed_varints(self.mm, a, b, what) if wire == LEN else np.array([signed(a)], np.int64)
                     for _, wire, a, b in chunks if wire in (LEN, VARINT)]
        values = np.concatenate(parts) if parts else np.empty(0, np.int64)
        if values.size != count:
            raise CorruptFileError(f"{what} holds {values.size:,} values, {list(t.dims)} needs {count:,}")
        if dtype in ("float32", "float64"):
            return values
        if dtype == "uint64":
            return values.view(np.uint64)
        if dtype == "float16":  # int32_data keeps float16 (like bfloat16 and float8) as bit patterns
            return values.astype(np.uint16).view(np.float16)
        return values.astype(dtypes.STORAGE[dtype])

    def _external(self, t: StoredTensor, need: int, wanted: int) -> np.ndarray:
        """Bytes of external data, from a regular file inside the model's folder, extent checked."""
        info = t.external or {}
        location = info.get("location", "")
        path = resolve_inside(self.folder, location, "ONNX external data")
        try:
            offset = int(info.get("offset") or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise CorruptFileError(f"external data of {t.name!r} has a non-numeric offset or length") from None
        try:
            # no following a link swapped in after resolve_inside, no blocking on a FIFO
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise CorruptFileError(f"external data file {location!r} of tensor {t.name!r} is missing") from None
        except OSError as e:
            raise UnsafeFileError(f"external data file {location!r} cannot be opened ({e.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(f"external data {location!r} is not a regular file")
            if length is None:
                length = max(st.st_size - offset, 0)
            check_extent(offset, length, st.st_size, f"external data of {t.name!r} in {location!r}")
            if length != need:
                raise CorruptFileError(f"tensor {t.name!r} declares {list(t.dims)} = {need:,} bytes but its external "
                                       f"data has {length:,}")
            data = np.empty(wanted, np.uint8)
            f.seek(offset)
            if f.readinto(memoryview(data)) != wanted:
                raise CorruptFileError(f"external data file {location!r} ended while reading {t.name!r}")
        return data

    def _densify(self, t: StoredTensor, dtype: str) -> np.ndarray:
        """A SparseTensorProto as a dense array (values scattered at linear or per-axis indices)."""
        assert t.sparse is not None
        values_t, indices_t = t.sparse
        values = self._decode(values_t).reshape(-1)
        indices = self._decode(indices_t).astype(np.int64)
        dims = dtypes.check_shape(t.dims)
        if indices.ndim == 2 and indices.shape[1] == len(dims) and len(dims) > 1:
            if (indices < 0).any() or (indices >= np.array(dims)).any():
                raise CorruptFileError(f"sparse tensor {t.name!r} has indices outside {list(dims)}")
            indices = np.ravel_multi_index(tuple(indices.T), dims)
        indices = indices.reshape(-1)
        if indices.size != values.size or (indices.size and (indices.min() < 0 or indices.max() >= math.prod(dims))):
            raise CorruptFileError(f"sparse tensor {t.name!r} has {indices.size} indices for {values.size} values in "
                                   f"{list(dims)}")
        dense = np.zeros(math.prod(dims), values.dtype)
        dense[indices] = values
        return dense.reshape(dims)

    def _dequantize(self, q: np.ndarray, quant: Quantization, name: str, rows: int | None) -> np.ndarray:
        if quant.scale is None and quant.zero_point is None:
            raise CorruptFileError(f"quantized weight {name!r} has no constant scale or zero point")
        scale = dtypes.to_float32(self._decode(quant.scale)) if quant.scale else np.ones(1, np.float32)
        zero = self._decode(quant.zero_point) if quant.zero_point else np.zeros(1, np.float32)
        if scale.ndim > 1 or zero.ndim > 1:
            raise CorruptFileError(f"blocked quantization of {name!r} (scale {list(scale.shape)}) is not supported")
        if not -q.ndim <= quant.axis < max(q.ndim, 1):
            raise CorruptFileError(f"quantization axis {quant.axis} of {name!r} is outside its {q.ndim} axes")
        if scale.size == 1 and zero.size > 1:
            scale = np.broadcast_to(scale.reshape(-1), zero.shape)
        if zero.size == 1 and scale.size > 1:
            zero = zero.reshape(())
        if rows is not None and q.ndim and quant.axis % q.ndim == 0 and scale.size > 1:  # first rows only
            scale = scale[: q.shape[0]]
            zero = zero if zero.ndim == 0 else zero[: q.shape[0]]
        return dtypes.dequantize(q, scale.reshape(-1), zero, quant.axis if scale.size > 1 else None)


def open(path) -> OnnxReader:  # noqa: A001 - the converter protocol's name
    return OnnxReader(Path(path))


# ---------------------------------------------------------------------------------------------
# Sniffing: ONNX has no magic bytes, so the start of the file must parse as a ModelProto

#: ModelProto field number -> wire type; anything else means "not ONNX".
_MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN,
                 20: LEN, 25: LEN, 26: LEN}
_TEXT_FIELDS = (2, 3, 4, 6)
#: Fields some writers put before the graph (declaration order): opset_import, metadata_props.
_SMALL_MESSAGES = {8: {1: LEN, 2: VARINT}, 14: {1: LEN, 2: LEN}}
#: GraphProto fields (all length-delimited) -> the tags their payload may start with (None: text).
_NODE_TAGS = frozenset(range(0x0A, 0x53, 8))
_TENSOR_TAGS = frozenset({0x08, 0x0A, 0x10, 0x1A, 0x22, 0x25, 0x2A, 0x28, 0x32, 0x3A, 0x38, 0x42, 0x4A,
                          0x52, 0x51, 0x5A, 0x58, 0x62, 0x6A, 0x70, 0x82})
_VALUE_INFO_TAGS = frozenset({0x0A, 0x12, 0x1A, 0x22})
_GRAPH_FIELDS: dict[int, frozenset[int] | None] = {
    1: _NODE_TAGS, 2: None, 5: _TENSOR_TAGS, 10: None, 11: _VALUE_INFO_TAGS, 12: _VALUE_INFO_TAGS,
    13: _VALUE_INFO_TAGS, 14: frozenset({0x0A, 0x12}), 15: frozenset({0x0A, 0x12, 0x18, 0x1A}),
    16: frozenset({0x0A, 0x12})}
#: Highest ONNX IR version accepted while sniffing (IR 11 in 2025; room for growth).
_MAX_IR_VERSION = 32


def sniff(probe: Probe) -> bool:
    """True when the file starts with ``ir_version`` and its fields read as a ModelProto up to the graph."""
    head = probe.head
    if probe.is_dir or len(head) < 4 or head[0] != 0x08:
        return False
    try:
        return _reads_as_model(head, probe.size)
    except CorruptFileError:
        return False


def _reads_as_model(head: bytes, size: int) -> bool:
    ir_version, pos = read_varint(head, 1, len(head), "ir_version")
    if not 1 <= ir_version <= _MAX_IR_VERSION:
        return False
    while pos < len(head):
        key, pos = read_varint(head, pos, len(head), "ModelProto")
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire or number == 1:
            return False
        value, pos = read_varint(head, pos, len(head), "ModelProto")
        if wire == VARINT:
            continue
        if value > size - pos:
            return False
        if number == 7:
            return _graph_start_ok(head, pos, pos + value)
        if number in _TEXT_FIELDS:
            if pos + value > len(head):  # a long doc_string: what is visible must be UTF-8 text
                return _is_text_start(head[pos:])
            text(head, pos, pos + value, "ModelProto string")
        elif number in _SMALL_MESSAGES and pos + value <= len(head):
            for field_number, field_wire, a, b in iter_fields(head, pos, pos + value, "ModelProto"):
                if _SMALL_MESSAGES[number].get(field_number) != field_wire:
                    return False
                if field_wire == LEN:
                    text(head, a, b, "ModelProto entry")
        else:
            return False  # the rest follow the graph in files that writers make
        pos += value
    return False


def _graph_start_ok(head: bytes, start: int, end: int) -> bool:
    """The visible start of the graph reads as GraphProto fields whose payloads start plausibly."""
    pos, checked = start, 0
    while pos < min(end, len(head)):
        key, pos = read_varint(head, pos, len(head), "GraphProto")
        if key & 7 != LEN or (key >> 3) not in _GRAPH_FIELDS:
            return False
        length, pos = read_varint(head, pos, len(head), "GraphProto")
        if length > end - pos:
            return False
        tags = _GRAPH_FIELDS[key >> 3]
        visible = head[pos:min(pos + length, len(head))]
        if tags is None and not _is_text_start(visible) or tags is not None and visible and visible[0] not in tags:
            return False
        checked += 1
        pos += length
    return checked >= 2 or checked == 1 and (pos == end or pos > len(head))


def _is_text_start(data: bytes) -> bool:
    """True when ``data`` is UTF-8, allowing a character cut at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True
