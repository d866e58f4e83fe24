"""ConvInteger and MatMulInteger: the weight's scale is applied by the graph after the operator.

onnxruntime's dynamic quantizer (``quantize_dynamic``) writes ``ConvInteger(x_q, w_q, x_zp, w_zp)
-> Cast(to float) -> Mul(., x_scale * w_scale)``, where ``x_scale`` comes from a
``DynamicQuantizeLinear`` of the input and ``w_scale`` is an initializer named for the weight
(``conv1.weight_scale`` beside ``conv1.weight_quantized``). That Mul is followed here; the
weight's scale is taken only where the graph shows it is the weight's, else the values are
called what they are: unscaled integers.
"""

from __future__ import annotations

import math

from .model import Node, StoredTensor
from .ops import Quantization, WeightOp
from .scopes import Produced, Scope

#: Casts followed from the operator's output to the Mul that scales it.
_MAX_CASTS = 4


def applied_scale(node: Node, op: WeightOp, scope: Scope, q: StoredTensor,
                  zero: StoredTensor | None) -> Quantization:
    """The weight's quantization: its zero point, and its scale where the graph applies it."""
    found = _scale_after(node, scope, q, op.quant_axis)
    if found is None:
        how = (f"unscaled integers (stored values minus the zero point): no constant weight scale "
               f"applied after the {node.op_type} was found")
        return Quantization(None, zero, op.quant_axis, how, scale_optional=True)
    scale, mul = found
    how = (f"dequantized with its zero point and the scale {scale.name!r} that {mul.label} applies "
           f"after the {node.op_type}")
    return Quantization(scale, zero, op.quant_axis, how)


def _scale_after(node: Node, scope: Scope, q: StoredTensor, axis: int) -> tuple[StoredTensor, Node] | None:
    """Follow the operator's only consumer through Casts to a Mul, and find the weight's scale there."""
    value = node.outputs[0] if node.outputs else ""
    for _ in range(_MAX_CASTS + 1):
        user = _only_user(value, scope)
        if user is None or user.op_type not in ("Cast", "Mul"):
            return None
        if user.op_type == "Mul":
            scale = _weight_scale(user, value, scope, q)
            return (scale, user) if scale is not None and _fits(scale, q, axis) else None
        value = user.outputs[0]
    return None


def _only_user(value: str, scope: Scope) -> Node | None:
    """The one standard node that consumes ``value`` (None if there are several: no single path)."""
    users = scope.consumers(value) if value else []
    if len(users) != 1 or not users[0].standard or not users[0].outputs:
        return None
    return users[0]


def _weight_scale(mul: Node, value: str, scope: Scope, q: StoredTensor) -> StoredTensor | None:
    """The weight's scale among the Mul's other operand: itself, or one factor of the Mul computing it.

    A constant named for the weight (``<weight>_scale`` beside ``<weight>_quantized``) is the
    weight's; so is the only constant factor multiplied with a ``DynamicQuantizeLinear``'s scale
    (the input's, computed at run time). Anything else is not claimed.
    """
    others = [v for v in mul.inputs if v != value]
    if len(others) != 1:
        return None
    factors, scope = _factors(others[0], scope)
    constants = {f: c for f in factors if (c := scope.constant(f)) is not None}
    named = [c for c in constants.values() if c.name == _scale_name(q.name)]
    return named[0] if named else _beside_dynamic(factors, constants, scope)


def _beside_dynamic(factors: list[str], constants: dict[str, StoredTensor], scope: Scope) -> StoredTensor | None:
    """The constant of ``x_scale * w_scale`` when ``x_scale`` is a DynamicQuantizeLinear's output."""
    computed = [f for f in factors if f not in constants]
    if len(factors) != 2 or len(computed) != 1:
        return None
    scale = scope.producer(computed[0])
    return next(iter(constants.values())) if scale and scale.op_type == "DynamicQuantizeLinear" else None


def _factors(value: str, scope: Scope) -> tuple[list[str], Scope]:
    """The operands of the standard Mul computing ``value`` (and their scope), else ``value`` alone."""
    found = scope.find(value)
    if isinstance(found, Produced) and found.node.op_type == "Mul" and found.node.standard:
        return found.node.inputs, found.scope
    return [value], scope


def _scale_name(quantized: str) -> str:
    """The name onnxruntime's quantizer gives the scale of the weight it stores as ``quantized``."""
    return quantized.removesuffix("_quantized") + "_scale"


def _fits(scale: StoredTensor, q: StoredTensor, axis: int) -> bool:
    """One scale, or one per output channel of the weight (``axis`` is 0 or -1: any axis of a weight)."""
    count = math.prod(scale.dims)
    return count == 1 or bool(q.dims) and count == q.dims[axis]
