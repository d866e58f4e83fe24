"""The parts of a ModelProto filtergrid keeps: nodes and graphs by name, tensors by byte spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

#: TensorProto.DataType codes filtergrid decodes, in the vocabulary of :mod:`filtergrid.dtypes`.
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
               17: "float8_e4m3fn", 19: "float8_e5m2"}
#: Codes listed by name but not decoded.
_UNDECODED = {8: "string", 14: "complex64", 15: "complex128", 18: "float8_e4m3fnuz",
              20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1", 24: "float8_e8m0",
              25: "uint2", 26: "int2", 27: "float6_e2m3", 28: "float6_e3m2"}

#: The standard operator domains (``ai.onnx`` may also be written as the empty string).
STANDARD_DOMAINS = ("", "ai.onnx")


def type_name(code: int) -> str:
    return ONNX_DTYPES.get(code) or _UNDECODED.get(code) or f"onnx type {code}"


#: Where a TensorProto keeps one run of values when it has no raw_data: (field number, wire type, a, b)
#: as :func:`..protowire.iter_fields` yields them.
TypedSpan = tuple[int, int, int, int]


@dataclass
class StoredTensor:
    """A TensorProto remembered by where its bytes are, not by its values."""

    name: str
    dims: tuple[int, ...]
    data_type: int
    raw: tuple[int, int] | None = None
    typed: list[TypedSpan] = field(default_factory=list)
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

    @property
    def standard(self) -> bool:
        """An operator of the ONNX standard (not a custom domain, not a model-local function)."""
        return self.domain in STANDARD_DOMAINS

    def input(self, index: int | None) -> str:
        """The name of input ``index`` ("" when absent: optional inputs may be left out)."""
        return self.inputs[index] if index is not None and index < len(self.inputs) else ""

    def int_attribute(self, name: str, default: int) -> int:
        attr = self.attributes.get(name)
        return attr.ints[-1] if attr and attr.ints else default

    def constant_value(self) -> StoredTensor | None:
        """The tensor a Constant node outputs (its ``value`` attribute), else None."""
        value = self.attributes.get("value")
        if self.op_type == "Constant" and value and value.tensor and self.outputs:
            return value.tensor
        return None


@dataclass
class Graph:
    name: str = ""
    nodes: list[Node] = field(default_factory=list)
    initializers: list[StoredTensor] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # a model-local function's formal inputs

    @cached_property
    def constants(self) -> dict[str, StoredTensor]:
        """Initializers and Constant node outputs by name (a walk looks them up on every visit)."""
        constants = {t.name: t for t in self.initializers}
        for node in self.nodes:
            value = node.constant_value()
            if value is not None:
                constants[node.outputs[0]] = value
        return constants

    @cached_property
    def producers(self) -> dict[str, Node]:
        """The node computing each value of this graph."""
        return {out: node for node in self.nodes for out in node.outputs}


#: A model-local function is called by a node whose (domain, op_type, overload) is its key.
FunctionKey = tuple[str, str, str]


def function_key(node: Node) -> FunctionKey:
    return node.domain, node.op_type, node.overload
