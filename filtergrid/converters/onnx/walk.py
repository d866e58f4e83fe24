"""The graph in execution order: every node, and the If/Loop/Scan bodies and functions where they sit.

The walk is iterative (an explicit stack, so deep nesting cannot exhaust Python's), and a
model-local function's body is walked once per distinct set of arguments, for at most
``CALLS_PER_FUNCTION`` sets: a function calling another twice per level, 21 levels deep, is 21
bodies, not 2^21. Later calls with new arguments list their constant arguments as inputs of the
call node. What remains is bounded: node visits by ``MAX_TENSORS``, calls within calls by
``MAX_NESTING``; a function that calls itself is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ... import limits
from ...errors import CorruptFileError
from .integer_ops import applied_scale
from .model import FunctionKey, Graph, Node, StoredTensor, function_key
from .ops import WEIGHT_OPS, Quantization, Traced, WeightOp
from .scopes import Scope, trace

#: Distinct argument sets a function's body is walked for (a layer function called for every layer
#: of a deep model needs a few hundred; more only multiplies work).
CALLS_PER_FUNCTION = 256


@dataclass
class Use:
    """A tensor consumed by a node: as its weight (``weight`` set, ``role`` says where) or otherwise."""

    tensor: StoredTensor
    role: str
    weight: tuple[Traced, WeightOp, Node] | None = None


@dataclass
class _Frame:
    """One graph being walked: a subgraph where its node sits, or a function body for one call."""

    graph: Graph
    scope: Scope
    where: str
    calls: int = 0  # function calls this frame sits inside
    call: tuple | None = None  # (function key, argument signatures) of the call this frame walks
    nodes: Iterator[Node] = field(init=False)
    started: bool = False

    def __post_init__(self) -> None:
        self.nodes = iter(self.graph.nodes)


class GraphWalk:
    """Collects every constant a node consumes, in execution order, each weight with its trace."""

    def __init__(self, functions: dict[FunctionKey, Graph]) -> None:
        self.functions = functions
        self.uses: list[Use] = []
        self._seen: set[tuple[int, bool]] = set()  # (tensor, as a weight): later uses change nothing
        self._walked: set[tuple] = set()  # function calls already walked with the same arguments
        self._calls: dict[FunctionKey, int] = {}  # distinct calls walked per function
        self._active: set[FunctionKey] = set()  # functions being walked (on the stack)
        self.visits = 0

    def run(self, graph: Graph) -> list[Use]:
        stack = [_Frame(graph, Scope(graph, None), "")]
        while stack:
            frame = stack[-1]
            if not frame.started and not self._enter(frame):
                stack.pop()
                continue
            node = next(frame.nodes, None)
            if node is None:
                self._leave(stack.pop())
                continue
            self._visit(node, frame)
            if node.subgraphs or self.functions and function_key(node) in self.functions:
                stack.extend(reversed(self._children(node, frame)))
        return self.uses

    def _enter(self, frame: _Frame) -> bool:
        """Start a frame; False when it is a function call already walked with the same arguments."""
        if frame.call is not None:
            key = frame.call[0]
            if key in self._active:
                raise CorruptFileError(f"model-local function {key[1]!r} calls itself (directly or through "
                                       "other functions): no runtime can expand it")
            if frame.call in self._walked or self._calls.get(key, 0) >= CALLS_PER_FUNCTION:
                return False
            self._calls[key] = self._calls.get(key, 0) + 1
            self._active.add(key)
        frame.started = True
        self.visits += len(frame.graph.nodes)
        limits.check("MAX_TENSORS", self.visits, "nodes visited walking the ONNX graph (a function's body "
                     "counts once per distinct set of arguments)")
        return True

    def _leave(self, frame: _Frame) -> None:
        if frame.call is not None:
            self._active.discard(frame.call[0])
            self._walked.add(frame.call)

    def _add(self, use: Use) -> None:
        key = (id(use.tensor), use.weight is not None)
        if key not in self._seen:
            self._seen.add(key)
            self.uses.append(use)

    def _visit(self, node: Node, frame: _Frame) -> None:
        op = WEIGHT_OPS.get(node.op_type)
        if op is not None and node.standard:
            traced = weight(node, op, frame.scope)
            if traced is not None:
                self._add(Use(traced.tensor, frame.where, (traced, op, node)))
        for i, value in enumerate(node.inputs):
            tensor = frame.scope.constant(value)
            if tensor is not None:
                self._add(Use(tensor, f"input {i} of {node.label}{frame.where}"))

    def _children(self, node: Node, frame: _Frame) -> list[_Frame]:
        """The node's subgraphs (then_branch first), then the body of the function it calls."""
        children = [_Frame(sub, Scope(sub, frame.scope), f" in subgraph {sub.name!r}", frame.calls)
                    for sub in node.subgraphs]
        function = self.functions.get(function_key(node))
        if function is not None:
            limits.check("MAX_NESTING", frame.calls + 1, "depth of calls between ONNX model-local functions")
            # trailing inputs are optional: zip stops at the shorter list
            arguments = {formal: trace(actual, frame.scope) if actual else None
                         for formal, actual in zip(function.inputs, node.inputs, strict=False)}
            call = (function_key(node), tuple(a and a.signature() for a in arguments.values()))
            children.append(_Frame(function, Scope(function, None, arguments), f" in function {function.name!r}",
                                   frame.calls + 1, call))
        return children


def weight(node: Node, op: WeightOp, scope: Scope) -> Traced | None:
    """The constant behind the node's weight input, with the quantization the node applies to it."""
    traced = trace(node.input(op.weight), scope)
    if traced is None or op.scale is None and op.zero_point is None:
        return traced
    if traced.quant is not None:  # a DequantizeLinear before a quantized operator: not a plain weight
        return None
    zero = scope.constant(node.input(op.zero_point))
    if op.integer:
        traced.quant = applied_scale(node, op, scope, traced.tensor, zero)
    else:
        traced.quant = Quantization(scope.constant(node.input(op.scale)), zero, op.quant_axis,
                                    "dequantized with its scale and zero point")
    return traced
