"""ModelProto -> GraphProto -> NodeProto/TensorProto, read on the wire as names and byte spans.

``onnx.load`` parses every initializer into memory and refuses files over 2 GiB; this walk keeps
each tensor's values as spans of the mapped file and only the structure (names, op types, short
attributes) as Python objects. What it keeps is bounded twice: bytes of structure walked by
``MAX_HEADER_BYTES``, objects kept by ``MAX_TENSORS``; subgraph nesting by ``MAX_NESTING``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ... import limits
from ...errors import CorruptFileError
from ..protowire import (
    LEN,
    MAX_VARINT_BYTES,
    VARINT,
    iter_fields,
    packed_varints,
    part,
    short_text,
    signed,
    text,
)
from .model import Attribute, FunctionKey, Graph, Node, StoredTensor, TypedSpan

#: Nodes, names and values the walk may keep per allowed tensor (bounds memory on hostile graphs).
ITEMS_PER_TENSOR = 4
#: Longest dims list read (check_shape refuses rank > 8 when a tensor is decoded).
_MAX_DIMS = 64
#: Attribute ints kept (only short ones matter: perm, transB, axis, block_size, to).
_MAX_INTS = 64

# TensorProto fields holding values when there is no raw_data: float, int32, int64, double, uint64.
TYPED_FIELDS = (4, 5, 7, 10, 11)
#: NodeProto string fields besides inputs (1) and outputs (2).
_NODE_STRINGS = {3: "name", 4: "op_type", 7: "domain", 8: "overload"}
#: AttributeProto fields holding ints: i (3), ints (8, one by one or packed).
_INT_FIELDS = ((3, VARINT), (8, VARINT), (8, LEN))
#: ModelProto fields that say what wrote the file (beside opset_import, 8).
_WRITER_FIELDS = {1: "ir_version", 2: "producer_name", 3: "producer_version", 8: "opset_import"}
#: Opset imports kept (a model imports a handful of domains).
_MAX_OPSETS = 8
#: AttributeProto fields holding subgraphs: g (6) and graphs (11).
_GRAPH_FIELDS = (6, 11)


class StructureBudget:
    """Bytes of graph structure walked — everything but tensor values — against MAX_HEADER_BYTES.

    The walk reads each top-level message (the graph, each function) front to back, so at any
    position the structure read is the bytes walked so far minus the tensor values skipped.
    """

    def __init__(self) -> None:
        self.done = self.start = self.values = 0

    def begin(self, start: int) -> None:
        self.start, self.values = start, 0

    def skip_values(self, length: int) -> None:
        self.values += length

    def reached(self, position: int) -> int:
        walked = self.done + position - self.start - self.values
        if walked > limits.MAX_HEADER_BYTES:
            raise limits.exceeded("MAX_HEADER_BYTES", "ONNX graph structure (bytes besides tensor values)", walked)
        return walked

    def end(self, position: int) -> None:
        self.done = self.reached(position)
        self.start = position


def drive(parse: Generator[Any, Any, Any]) -> Any:
    """Run a parse that yields the sub-parses it needs and receives their results.

    Subgraphs nest in nodes in graphs; parsed by nested calls, a file nesting them a few hundred
    deep would exhaust Python's stack whatever MAX_NESTING says. Here the nesting is a list.
    """
    stack, value = [parse], None
    while stack:
        try:
            sub = stack[-1].send(value)
        except StopIteration as done:
            stack.pop()
            value = done.value
        else:
            stack.append(sub)
            value = None
    return value


class ModelParser:
    """Reads the model's graph and functions as spans, counting what it keeps.

    ``graph``, ``node``, ``attribute`` and ``function`` are generators run by :func:`drive`:
    each yields the parse of a nested message and receives its result.
    """

    def __init__(self, buf) -> None:
        self.buf = buf
        self.tensors: list[StoredTensor] = []  # initializers and Constant values, in storage order
        self.functions: dict[FunctionKey, Graph] = {}
        self.kept = 0
        self.most_kept = ITEMS_PER_TENSOR * limits.MAX_TENSORS
        self.budget = StructureBudget()
        #: What ModelProto says about its writer: ir_version, producer name/version, opset imports.
        self.written_by: dict[str, Any] = {"opsets": []}

    def count(self) -> None:
        """Bound the nodes, names and values kept, whatever the file declares."""
        self.kept += 1
        if self.kept > self.most_kept:
            raise limits.exceeded("MAX_TENSORS", f"model structure holds more than {ITEMS_PER_TENSOR} nodes, "
                                  "names and values per allowed tensor")

    def text(self, a: int, b: int, what: str) -> str:
        return text(self.buf, a, b, what)

    def model(self) -> Graph:
        graph = None
        for number, wire, a, b in iter_fields(self.buf, 0, len(self.buf), "ModelProto"):
            if number == 7 and wire == LEN:
                graph = (a, b)
            elif number in _WRITER_FIELDS:
                self.writer_field(number, wire, a, b)
            elif number == 25 and wire == LEN:
                self.budget.begin(a)
                drive(self.function(a, b))
                self.budget.end(b)
        if graph is None:
            raise CorruptFileError("the model has no graph")
        self.budget.begin(graph[0])
        main = drive(self.graph(*graph, depth=0))
        self.budget.end(graph[1])
        return main

    def writer_field(self, number: int, wire: int, a: int, b: int) -> None:
        """ir_version (1), producer_name (2), producer_version (3), opset_import (8): a few bounded fields."""
        if number == 1 and wire == VARINT:
            self.written_by["ir_version"] = a
        elif number in (2, 3) and wire == LEN:
            self.written_by[_WRITER_FIELDS[number]] = short_text(self.buf, a, b)
        elif number == 8 and wire == LEN and len(self.written_by["opsets"]) < _MAX_OPSETS:
            opset = {1: "", 2: 0}  # OperatorSetIdProto: domain, version
            for n, w, x, y in iter_fields(self.buf, a, b, "OperatorSetIdProto"):
                if n == 1 and w == LEN:
                    opset[1] = short_text(self.buf, x, y)
                elif n == 2 and w == VARINT:
                    opset[2] = signed(x)
            self.written_by["opsets"].append((opset[1] or "ai.onnx", opset[2]))

    def function(self, start: int, end: int) -> Generator[Any, Any, None]:
        """A FunctionProto, kept as a graph of its nodes with its formal inputs."""
        g, key = Graph(), {10: "", 13: ""}  # domain, overload
        for number, wire, a, b in iter_fields(self.buf, start, end, "FunctionProto"):
            if wire != LEN:
                continue
            if number == 1:
                g.name = self.text(a, b, "FunctionProto.name")
            elif number == 4:
                self.count()
                g.inputs.append(self.text(a, b, "FunctionProto.input"))
            elif number == 7:
                g.nodes.append((yield self.node(a, b, depth=1)))
            elif number in key:
                key[number] = self.text(a, b, "FunctionProto.domain/overload")
        self.functions[(key[10], g.name, key[13])] = g

    def graph(self, start: int, end: int, depth: int) -> Generator[Any, Any, Graph]:
        limits.check("MAX_NESTING", depth, "depth of ONNX subgraphs")
        g = Graph()
        for number, wire, a, b in iter_fields(self.buf, start, end, "GraphProto"):
            if wire != LEN:
                continue
            if number == 1:
                g.nodes.append((yield self.node(a, b, depth)))
            elif number == 2:
                g.name = self.text(a, b, "GraphProto.name")
            elif number == 5:
                g.initializers.append(self.keep(self.tensor(a, b, "GraphProto.initializer")))
            elif number == 15:
                g.initializers.append(self.keep(self.sparse_tensor(a, b)))
        return g

    def keep(self, tensor: StoredTensor) -> StoredTensor:
        self.tensors.append(tensor)
        limits.check("MAX_TENSORS", len(self.tensors), "tensors in the ONNX model")
        return tensor

    def node(self, start: int, end: int, depth: int) -> Generator[Any, Any, Node]:
        n, buf = Node(), self.buf
        for number, wire, a, b in iter_fields(buf, start, end, "NodeProto"):
            if wire != LEN:
                continue
            self.count()
            if number == 1:
                n.inputs.append(text(buf, a, b, "NodeProto.input"))
            elif number == 2:
                n.outputs.append(text(buf, a, b, "NodeProto.output"))
            elif number in _NODE_STRINGS:
                setattr(n, _NODE_STRINGS[number], text(buf, a, b, "NodeProto.name/op_type/domain/overload"))
            elif number == 5:
                name, attribute = yield self.attribute(a, b, depth)
                n.attributes[name] = attribute
        if n.attributes:
            self.node_attributes(n)
        self.budget.reached(end)
        return n

    def node_attributes(self, n: Node) -> None:
        """A Constant's value is a tensor of the model; subgraphs are walked then_branch first."""
        constant = n.constant_value()
        if constant is not None:
            constant.name = n.outputs[0]
            self.keep(constant)
        # an If's then_branch before its else_branch, whatever order the attributes are stored in
        # (onnx.helper sorts them by name); other subgraphs in stored order
        ordered = sorted(n.attributes.items(), key=lambda item: item[0] != "then_branch")
        n.subgraphs = [g for _, attr in ordered for g in attr.graphs]

    def attribute(self, start: int, end: int, depth: int) -> Generator[Any, Any, tuple[str, Attribute]]:
        name, attr = "", Attribute()
        for number, wire, a, b in iter_fields(self.buf, start, end, "AttributeProto"):
            if number == 1 and wire == LEN:
                name = self.text(a, b, "AttributeProto.name")
            elif (number, wire) in _INT_FIELDS:
                self.attribute_ints(attr, wire, a, b)
            elif number == 5 and wire == LEN:
                attr.tensor = self.tensor(a, b, "AttributeProto.t")
            elif number in _GRAPH_FIELDS and wire == LEN:
                attr.graphs.append((yield self.graph(a, b, depth + 1)))
        return name, attr

    def attribute_ints(self, attr: Attribute, wire: int, a: int, b: int) -> None:
        """Short int lists only: longer ones (nothing filtergrid needs) are not kept."""
        if wire == VARINT and len(attr.ints) < _MAX_INTS:
            attr.ints.append(signed(a))
        elif wire == LEN and b - a <= _MAX_INTS * MAX_VARINT_BYTES:
            attr.ints.extend(int(v) for v in packed_varints(self.buf, a, b, "AttributeProto.ints"))

    def tensor(self, start: int, end: int, what: str) -> StoredTensor:
        t = StoredTensor("", (), 0)
        dims: list[int] = []
        external: list[tuple[int, int]] = []
        location = 0
        for number, wire, a, b in iter_fields(self.buf, start, end, what):
            if number == 1:
                dims.extend(self.varints(wire, a, b, f"{what}.dims"))
            elif number in TYPED_FIELDS:
                self.values(t, (number, wire, a, b))
            elif (number, wire) == (2, VARINT):
                t.data_type = a
            elif (number, wire) == (14, VARINT):
                location = a
            elif (number, wire) == (8, LEN):
                t.name = self.text(a, b, f"{what}.name")
            elif (number, wire) == (9, LEN):
                t.raw = (a, b)
                self.budget.skip_values(b - a)
            elif (number, wire) == (13, LEN):
                external.append((a, b))
        t.dims = self.dims(dims, what)
        if location == 1:
            t.external = self.external(external)
        self.budget.reached(end)
        return t

    def values(self, t: StoredTensor, span: TypedSpan) -> None:
        """One run of a typed value field (float_data, int32_data, ...), kept as a span."""
        self.count()
        t.typed.append(span)
        _, wire, a, b = span
        self.budget.skip_values(b - a if wire != VARINT else 0)

    @staticmethod
    def dims(dims: list[int], what: str) -> tuple[int, ...]:
        if len(dims) > _MAX_DIMS:
            raise CorruptFileError(f"{part(what)} has {len(dims)} dimensions")
        return tuple(signed(d) for d in dims)

    def varints(self, wire: int, a: int, b: int, what: str) -> list[int]:
        """Dims, packed or not (a shape has few of them, so a long list is refused unread)."""
        self.count()
        if wire == VARINT:
            return [a]
        if wire == LEN and b - a <= _MAX_DIMS * MAX_VARINT_BYTES:
            return [int(v) for v in packed_varints(self.buf, a, b, what)]
        raise CorruptFileError(f"{part(what)} holds a value of the wrong kind where a short list of numbers belongs")

    def external(self, entries: list[tuple[int, int]]) -> dict[str, str]:
        """The key/value entries of external_data (location, offset, length)."""
        return dict(self.entry(a, b) for a, b in entries)

    def entry(self, start: int, end: int) -> tuple[str, str]:
        pair = {1: "", 2: ""}  # key, value
        for number, wire, a, b in iter_fields(self.buf, start, end, "StringStringEntryProto"):
            if number in pair and wire == LEN:
                pair[number] = self.text(a, b, "external_data entry")
        return pair[1], pair[2]

    def sparse_tensor(self, start: int, end: int) -> StoredTensor:
        parts: dict[int, StoredTensor] = {}  # values (1), indices (2)
        dims: list[int] = []
        for number, wire, a, b in iter_fields(self.buf, start, end, "SparseTensorProto"):
            if number in (1, 2) and wire == LEN:
                parts[number] = self.tensor(a, b, f"SparseTensorProto.{'values' if number == 1 else 'indices'}")
            elif number == 3:
                dims.extend(self.varints(wire, a, b, "SparseTensorProto.dims"))
        if len(parts) != 2:
            raise CorruptFileError("a sparse tensor lacks its values or indices")
        values = parts[1]
        return StoredTensor(values.name, self.dims(dims, "SparseTensorProto"), values.data_type,
                            sparse=(values, parts[2]))
