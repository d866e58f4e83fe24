"""TensorFlow graphs (``GraphDef`` and the function library of TF2), and the walk to the first layer.

The first layer is the first ``Conv2D``/``DepthwiseConv2dNative``/``MatMul``/... node, in the
graph's own node order, that the model's input reaches; calls (``StatefulPartitionedCall``) into
library functions are followed with their arguments bound, so a TF2 SavedModel's forward function is
searched where its signature calls it. The weight input is traced back through ``Identity``,
``ReadVariableOp``, ``Cast``, ``ExpandDims`` and one ``Transpose`` by a constant permutation (a Conv1D
kernel kept as (out, in, taps), as basic-pitch's CQT kernels are) to a ``Const`` node, a variable
node, or a captured argument of the function (resolved by the caller).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ... import limits
from ..protowire import LEN, iter_fields, packed_varints, text
from . import protos

#: Weight-bearing ops -> (input index of the weight, layout of a rank-4 weight, layout of rank 3).
WEIGHT_OPS = {
    "Conv2D": (1, "HWIO", "KIO"), "_FusedConv2D": (1, "HWIO", "KIO"),
    "DepthwiseConv2dNative": (1, "HWIM", None), "Conv2DBackpropInput": (1, "HWOI", None),
    "Conv3D": (1, None, None), "MatMul": (None, None, None), "_FusedMatMul": (None, None, None),
    "BatchMatMulV2": (None, None, None),
}
#: Ops whose output is their first input, for tracing a weight back to where it is stored.
PASS_THROUGH = {"Identity", "ReadVariableOp", "Cast", "ExpandDims", "Snapshot", "Enter", "StopGradient"}
CALLS = {"StatefulPartitionedCall", "PartitionedCall"}
VARIABLES = {"VarHandleOp", "VariableV2", "Variable"}

FED = ("fed",)
#: Layouts a transposed weight may be stored in, by the layout its op applies: the same kind of layer
#: (a Conv2D kernel stored as I,H,W,O is no depthwise IHWO kernel).
_SAME_KIND = {"HWIO": ("HWIO", "OIHW", "OHWI"), "KIO": ("KIO", "OIK"), "IO": ("IO", "OI"), "OI": ("IO", "OI"),
              "HWOI": ("HWOI", "IOHW")}


@dataclass(frozen=True)
class Via:
    """What lies between a stored weight and the op that applies it: an ExpandDims (a Conv1D's
    kernel made 2-D), a Transpose (``perm``: applied axis i is stored axis perm[i])."""

    expanded: bool = False
    perm: tuple[int, ...] | None = None

    def then(self, later: Via) -> Via | None:
        """This path followed by ``later`` (nearer the op); None for two transposes (not traced)."""
        if self.perm is not None and later.perm is not None:
            return None
        return Via(self.expanded or later.expanded, self.perm or later.perm)


@dataclass(eq=False)  # hashed by identity: a traced weight names its node
class Node:
    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Function:
    name: str
    args: list[str]
    nodes: list[Node]


@dataclass
class Hit:
    """A weight-bearing node the input reaches, and where its weight comes from."""

    op: str
    node: str
    function: str
    weight: tuple | None  # ("const", Node) | ("var", variable name) | ("object", object graph node id)
    transposed: bool
    via: Via = Via()


class GraphParser:
    """Nodes and functions of GraphDef messages inside ``buf``, bounded by MAX_TENSORS in all."""

    def __init__(self, buf) -> None:
        self.buf = buf
        self.count = 0
        self.functions: dict[str, Function] = {}

    def graph(self, span: tuple[int, int]) -> list[Node]:
        nodes = []
        for n, w, a, b in protos.fields(self.buf, span, "GraphDef"):
            if n == 1 and w == LEN:
                nodes.append(self.node(a, b))
            elif n == 2 and w == LEN:
                for fn, fw, fa, fb in iter_fields(self.buf, a, b, "function library"):
                    if fn == 1 and fw == LEN:
                        self.function(fa, fb)
        return nodes

    def node(self, start: int, end: int) -> Node:
        self.count += 1
        limits.check("MAX_TENSORS", self.count, "graph nodes")
        node = Node("", "", [])
        for n, w, a, b in iter_fields(self.buf, start, end, "NodeDef"):
            if w != LEN:
                continue
            if n == 1:
                node.name = text(self.buf, a, b, "node name")
            elif n == 2:
                node.op = text(self.buf, a, b, "node op")
            elif n == 3:
                node.inputs.append(text(self.buf, a, b, "node input"))
            elif n == 5:
                key, value = _map_entry(self.buf, a, b)
                node.attrs[key] = value
        return node

    def function(self, start: int, end: int) -> None:
        """A FunctionDef: its name and argument names (from its OpDef signature) and its body."""
        name, args, nodes = "", [], []
        for n, w, a, b in iter_fields(self.buf, start, end, "FunctionDef"):
            if n == 1 and w == LEN:
                name = _last(protos.strings(self.buf, (a, b), 1, "function name"))
                args = [_last(protos.strings(self.buf, (x, y), 1, "argument"))
                        for m, mw, x, y in iter_fields(self.buf, a, b, "OpDef") if m == 2 and mw == LEN]
            elif n == 3 and w == LEN:
                nodes.append(self.node(a, b))
        self.functions[name] = Function(name, args, nodes)


def _last(values: list[str]) -> str:
    """A singular string field's value: its last occurrence (protobuf's rule), or empty."""
    return values[-1] if values else ""


def _map_entry(buf, start: int, end: int) -> tuple[str, tuple[int, int]]:
    key, value = "", (end, end)
    for n, w, a, b in iter_fields(buf, start, end, "attr"):
        if n == 1 and w == LEN:
            key = text(buf, a, b, "attr name")
        elif n == 2 and w == LEN:
            value = (a, b)
    return key, value


def attr_string(buf, node: Node, name: str, number: int = 2) -> str:
    """A string attribute (``s``, field 2) or a function name (``func``, field 10 -> name)."""
    span = node.attrs.get(name)
    if span is None:
        return ""
    inner = protos.first(buf, span, number, f"attr {name}")
    if inner is None:
        return ""
    if number == 10:
        return (protos.strings(buf, inner, 1, f"attr {name}") or [""])[-1]
    return text(buf, inner[0], inner[1], f"attr {name}")


def attr_bool(buf, node: Node, name: str) -> bool:
    span = node.attrs.get(name)
    return bool(span and protos.varint(buf, span, 5, f"attr {name}"))


def _base(name: str) -> str:
    """The node (or argument) an input names: ``conv:0`` and ``call:output:0`` -> the node."""
    return name.split(":", 1)[0]


class Walk:
    """Follows the input through the graph and its calls to the first weight-bearing node.

    Which nodes the input reaches is computed over the data edges first (TF1 graphs list a node
    before its inputs inside ``tf.cond``), then the nodes are taken in the graph's own order.
    """

    def __init__(self, buf, functions: dict[str, Function]) -> None:
        self.buf = buf
        self.functions = functions
        self.visits = 0
        #: Concrete function -> object graph node ids of its captured (trailing) arguments.
        self.captures: dict[str, list[int]] = {}
        self._called: dict[tuple, Hit | None] = {}

    def first(self, nodes: list[Node], env: dict[str, tuple], function: str = "", depth: int = 0) -> Hit | None:
        """The first weight-bearing node, in node order, that the fed values in ``env`` reach."""
        limits.check("MAX_NESTING", depth, "nested function calls")
        by_name = {n.name: n for n in nodes}
        fed = self._reach(nodes, {name for name, source in env.items() if source == FED})
        for node in nodes:
            if node.name not in fed or env.get(node.name) == FED:
                continue
            if node.op in WEIGHT_OPS:
                return self._hit(node, self._sources(node, by_name, env, fed), function)
            if node.op in CALLS:
                hit = self._call(node, self._sources(node, by_name, env, fed), depth)
                if hit is not None:
                    return hit
        return None

    def string(self, node: Node, name: str, number: int = 2) -> str:
        """A string (or, with ``number=10``, a function name) attribute of a node."""
        return attr_string(self.buf, node, name, number)

    def flag(self, node: Node, name: str) -> bool:
        return attr_bool(self.buf, node, name)

    def _reach(self, nodes: list[Node], seeds: set[str]) -> set[str]:
        """Names of the nodes that a seed reaches along data edges (breadth first)."""
        consumers: dict[str, list[str]] = {}
        for node in nodes:
            self._count()
            for name in node.inputs:
                if not name.startswith("^"):
                    consumers.setdefault(_base(name), []).append(node.name)
        reached, frontier = set(seeds), list(seeds)
        while frontier:
            for consumer in consumers.get(frontier.pop(), ()):
                if consumer not in reached:
                    self._count()
                    reached.add(consumer)
                    frontier.append(consumer)
        return reached

    def _count(self) -> None:
        self.visits += 1
        limits.check("MAX_TENSORS", self.visits, "graph nodes visited")

    def _sources(self, node: Node, by_name: dict[str, Node], env: dict[str, tuple], fed: set[str]) -> list:
        return [self._source(i, by_name, env, fed) for i in node.inputs if not i.startswith("^")]

    def _source(self, name: str, by_name: dict[str, Node], env: dict[str, tuple], fed: set[str]) -> tuple | None:
        """Where a value comes from: FED, or a stored weight traced back through pass-through ops
        (its last element the :class:`Via` path from the stored tensor to here)."""
        via: Via | None = Via()
        for _ in range(len(by_name) + 1):  # a chain of pass-through nodes, no longer than the graph
            base = _base(name)
            if base in env:
                source = env[base]
                if source is None or source == FED:
                    return source
                joined = source[-1].then(via)
                return None if joined is None else (*source[:-1], joined)
            if base in fed:
                return FED
            node = by_name.get(base)
            if node is None or via is None:
                return None
            if node.op == "Const":
                return ("const", node, via)
            if node.op in VARIABLES:
                return ("var", self.string(node, "shared_name") or node.name, via)
            forwarded, via = self._pass(node, by_name, via)
            if forwarded is None:
                return None
            name = forwarded
        return None

    def _pass(self, node: Node, by_name: dict[str, Node], via: Via) -> tuple[str | None, Via | None]:
        """The input a pass-through node forwards and the path so far, or (None, None) for any other op."""
        data = [i for i in node.inputs if not i.startswith("^")]
        if node.op == "Transpose" and len(data) == 2:
            perm = by_name.get(_base(data[1]))
            values = const_ints(self.buf, perm) if perm is not None and perm.op == "Const" else None
            return (data[0], Via(perm=values).then(via)) if values else (None, None)
        if node.op not in PASS_THROUGH or not data:
            return None, None
        return data[0], Via(expanded=node.op == "ExpandDims").then(via)

    def _call(self, node: Node, sources: list, depth: int) -> Hit | None:
        callee = self.functions.get(self.string(node, "f", 10))
        if callee is None:
            return None
        env = {arg: source for arg, source in zip(callee.args, sources)}
        bound = self.captures.get(callee.name, [])
        if 0 < len(bound) <= len(callee.args):
            for arg, node_id in zip(callee.args[-len(bound):], bound):
                env[arg] = ("object", node_id, Via())
        key = (callee.name, tuple(env.get(arg) for arg in callee.args))
        if key not in self._called:
            self._called[key] = self.first(callee.nodes, env, callee.name, depth + 1)
        return self._called[key]

    def _hit(self, node: Node, sources: list, function: str) -> Hit:
        index, _, _ = WEIGHT_OPS[node.op]
        transposed = False
        if index is None:  # MatMul: the weight is the operand that is not the input
            index = 1 if sources[0] == FED else 0
            flag = {"MatMul": ("transpose_b", "transpose_a"), "_FusedMatMul": ("transpose_b", "transpose_a"),
                    "BatchMatMulV2": ("adj_y", "adj_x")}[node.op][1 - index]
            transposed = self.flag(node, flag) != (index == 0)
        source = sources[index] if index < len(sources) else None
        if source is None or source == FED:
            return Hit(node.op, node.name, function, None, transposed)
        return Hit(node.op, node.name, function, source[:-1], transposed, source[-1])


def layout(hit: Hit, rank: int) -> str | None:
    """The stored layout of a hit's weight of the given rank, or None when filtergrid cannot show it."""
    if hit.op in ("MatMul", "_FusedMatMul", "BatchMatMulV2"):
        applied = ("OI" if hit.transposed else "IO") if rank == 2 else None
    else:
        _, rank4, rank3 = WEIGHT_OPS[hit.op]
        applied = {4: rank4, 3: rank3}.get(rank)
    perm = hit.via.perm
    if applied is None or perm is None:
        return applied
    if sorted(perm) != list(range(len(applied))):
        return None
    stored = [""] * len(perm)
    for axis, source in enumerate(perm):  # applied axis i is stored axis perm[i]
        stored[source] = applied[axis]
    return "".join(stored) if "".join(stored) in _SAME_KIND.get(applied, ()) else None


def const_ints(buf, node: Node) -> tuple[int, ...] | None:
    """The values of a small integer Const (a Transpose's ``perm``), or None."""
    span = node.attrs.get("value")
    tensor = protos.first(buf, span, 8, "Const") if span else None
    if tensor is None:
        return None
    dtype = protos.dtype_name(protos.varint(buf, tensor, 1, "Const"))
    content = protos.first(buf, tensor, 4, "Const")
    if content is not None and dtype in ("int32", "int64") and content[1] - content[0] <= 64:
        size = 4 if dtype == "int32" else 8
        raw = bytes(buf[content[0]:content[1]])
        return struct.unpack(f"<{len(raw) // size}{'iq'[size == 8]}", raw[:len(raw) // size * size])
    packed = [(a, b) for n, w, a, b in protos.fields(buf, tensor, "Const") if n == 7 and w == LEN]
    return tuple(packed_varints(buf, *packed[-1], "int_val")) if packed and packed[-1][1] - packed[-1][0] <= 64 else None


