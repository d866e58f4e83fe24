"""Names in scope, and the constant behind a value (through Identity, Cast, Transpose, DequantizeLinear).

A subgraph (If/Loop/Scan body) sees its own names, then its enclosing graph's. A model-local
function sees nothing of its caller but its arguments, which the caller traces before the call:
the function body then depends only on what its arguments are, which lets a walk remember it.
"""

from __future__ import annotations

from typing import NamedTuple

from ... import limits
from .model import Graph, Node, StoredTensor
from .ops import Quantization, Traced

#: Operators a weight passes through unchanged in value (Cast keeps values; a float16 weight is
#: cast to float before its Conv).
_PASS_THROUGH = ("Identity", "Cast")


class Produced(NamedTuple):
    """A value computed by ``node``, whose inputs are names in ``scope``."""

    node: Node
    scope: Scope


#: What a name is in a scope: a constant, a computed value, or a function's argument as the caller
#: traced it; None when it is none of these (a graph input, or an argument with no constant behind).
Found = StoredTensor | Produced | Traced | None


class Scope:
    """Names visible in one graph: its constants and producers, then the enclosing graph's.

    ``arguments`` (a function body) maps each formal input to what the caller traced it to (None:
    no constant behind it); a function scope has no parent.
    """

    def __init__(self, graph: Graph, parent: Scope | None, arguments: dict[str, Traced | None] | None = None):
        self.graph = graph
        self.parent = parent
        self.arguments = arguments
        self.constants = graph.constants
        self.producers = graph.producers
        self._consumers: dict[str, list[Node]] | None = None
        self._outer: dict[str, Found] = {}  # names found in enclosing scopes, remembered

    def find(self, name: str) -> Found:
        """What ``name`` is here; each scope remembers what it looked up outside itself, so a
        name used at every level of deeply nested bodies costs one lookup per level."""
        passed: list[Scope] = []
        scope: Scope | None = self
        found: Found = None
        while scope is not None and name:
            if name in scope._outer:
                found = scope._outer[name]
                break
            found = scope._local(name)
            if found is not None or scope.arguments is not None:
                break
            passed.append(scope)
            scope = scope.parent
        for inner in passed:  # none of these defines it: each resolves it as found
            inner._outer[name] = found
        return found

    def _local(self, name: str) -> Found:
        if name in self.constants:
            return self.constants[name]
        if name in self.producers:
            return Produced(self.producers[name], self)
        return self.arguments.get(name) if self.arguments is not None else None

    def constant(self, name: str) -> StoredTensor | None:
        """The constant ``name`` is, with nothing between (an argument bound to a constant counts)."""
        if name in self.constants:
            return self.constants[name]
        if name in self.producers:  # the common case: a value computed right here
            return None
        found = self.find(name)
        if isinstance(found, Traced):
            return found.tensor if found.direct else None
        return found if isinstance(found, StoredTensor) else None

    def producer(self, name: str) -> Node | None:
        found = self.find(name)
        return found.node if isinstance(found, Produced) else None

    def consumers(self, name: str) -> list[Node]:
        """Nodes of this graph that take ``name`` as an input (built on first use)."""
        if self._consumers is None:
            self._consumers = {}
            for node in self.graph.nodes:
                for value in dict.fromkeys(node.inputs):
                    self._consumers.setdefault(value, []).append(node)
        return self._consumers.get(name, [])


def trace(value: str, scope: Scope) -> Traced | None:
    """The constant behind ``value``, through Identity, Cast, Transpose and DequantizeLinear nodes."""
    perms: list[list[int] | None] = []
    via: list[str] = []
    for _ in range(limits.MAX_NESTING):
        found = scope.find(value)
        if not isinstance(found, Produced):
            return _reached(found, perms, via)
        node, scope = found
        via.append(node.label)
        if node.op_type == "DequantizeLinear" and node.standard:
            return _dequantized(node, scope, perms, via)
        if not _passes_on(node, perms):
            return None
        value = node.inputs[0]
    return None


def _reached(found: Found, perms: list[list[int] | None], via: list[str]) -> Traced | None:
    """The end of a trace: a constant of this scope, or one an argument was traced to."""
    if isinstance(found, Traced):
        return found.behind(perms, via)
    return Traced(found, None, perms, via) if isinstance(found, StoredTensor) else None


def _passes_on(node: Node, perms: list[list[int] | None]) -> bool:
    """Identity, Cast and Transpose pass a weight on (a Transpose's perm is recorded)."""
    if not node.standard or not node.inputs:
        return False
    if node.op_type == "Transpose":
        attr = node.attributes.get("perm")
        perms.append(list(attr.ints) if attr else None)
        return True
    return node.op_type in _PASS_THROUGH


def _dequantized(node: Node, scope: Scope, perms: list[list[int] | None], via: list[str]) -> Traced | None:
    """A DequantizeLinear of a constant: its scale and zero point are constants too (or refused when read)."""
    q = scope.constant(node.input(0))
    if q is None:
        return None
    quant = Quantization(scope.constant(node.input(1)), scope.constant(node.input(2)),
                         node.int_attribute("axis", 1), "dequantized")  # blocked scales are refused when read
    return Traced(q, quant, perms, via)
