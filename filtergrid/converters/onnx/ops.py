"""What the operators that hold a layer's weight say about it: which input, which layout, which scale."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...layout import LAYOUTS
from .model import Node, StoredTensor


@dataclass(frozen=True)
class WeightOp:
    """Where an operator takes its weight, how that weight is laid out, how it is quantized."""

    weight: int
    kind: str  # conv | transposed | gemm | matmul
    scale: int | None = None
    zero_point: int | None = None
    quant_axis: int = 0  # the axis per-channel scales run along (output channels)
    integer: bool = False  # ConvInteger/MatMulInteger: the graph applies the weight's scale after the op


WEIGHT_OPS = {
    "Conv": WeightOp(1, "conv"),
    "ConvTranspose": WeightOp(1, "transposed"),
    "Gemm": WeightOp(1, "gemm"),
    "MatMul": WeightOp(1, "matmul"),
    "QLinearConv": WeightOp(3, "conv", scale=4, zero_point=5),
    "ConvInteger": WeightOp(1, "conv", zero_point=3, integer=True),
    "MatMulInteger": WeightOp(1, "matmul", zero_point=3, quant_axis=-1, integer=True),
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


@dataclass(frozen=True)
class Quantization:
    """How stored integers become the weight's values: ``(q - zero_point) * scale`` along ``axis``.

    ``scale`` None means no scale is applied: with ``scale_optional`` (integer ops whose scale the
    graph applies elsewhere and was not found) the values are unscaled integers and ``how`` says
    so; otherwise a missing scale is refused when the tensor is read.
    """

    scale: StoredTensor | None
    zero_point: StoredTensor | None
    axis: int
    how: str
    scale_optional: bool = False


@dataclass
class Traced:
    """A constant tensor a weight input comes from, and what lies between them."""

    tensor: StoredTensor
    quant: Quantization | None = None
    perms: list[list[int] | None] = field(default_factory=list)  # Transposes, consumer side first
    via: list[str] = field(default_factory=list)

    @property
    def direct(self) -> bool:
        """The constant itself, nothing between."""
        return self.quant is None and not self.perms and not self.via

    def behind(self, perms: list[list[int] | None], via: list[str]) -> Traced:
        """This trace seen from further down: ``perms`` and ``via`` lie between it and the consumer."""
        return Traced(self.tensor, self.quant, perms + self.perms, via + self.via)

    def signature(self) -> tuple:
        """What a function body can learn from this argument (its memo key)."""
        perms = tuple(None if p is None else tuple(p) for p in self.perms)
        quant = self.quant and (id(self.quant.scale), id(self.quant.zero_point), self.quant.axis)
        return id(self.tensor), perms, quant
