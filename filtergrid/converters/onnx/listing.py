"""The listing: tensors in the order nodes consume them, each weight at the node it is the weight of.

The first candidate is the weight of the first Conv/Gemm/MatMul (or quantized variant) the walk
meets, which is the first layer the forward pass applies. When no weight can be traced to a
constant (reshaped or computed weights), matrices are offered by name instead, and say so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...bank import TensorInfo
from ...layout import CHANNELS_FIRST
from ..base import is_weight
from .model import StoredTensor, type_name
from .ops import Quantization, stored_layout, weight_layout
from .walk import Use

#: Why a tensor is a candidate when no weight could be traced.
_UNTRACED = "rank-{rank} tensor (no Conv/Gemm/MatMul weight could be traced to a constant)"


@dataclass(frozen=True)
class Entry:
    info: TensorInfo
    tensor: StoredTensor
    quant: Quantization | None


class Listing:
    """Entries by unique name, in placement order (names used in several subgraphs get #2, #3, ...)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._placed: set[int] = set()
        self._repeats: dict[str, int] = {}
        self.weights = 0  # weights placed so far

    def place(self, tensor: StoredTensor, layout: str, role: str, candidate: bool,
              quant: Quantization | None = None) -> bool:
        """List ``tensor`` here, unless it is listed already (each tensor once, where first placed)."""
        if id(tensor) in self._placed:
            return False
        name = base = tensor.name or "(unnamed)"
        while name in self.entries:
            self._repeats[base] = self._repeats.get(base, 1) + 1
            name = f"{base}#{self._repeats[base]}"
        info = TensorInfo(name, tensor.dims, type_name(tensor.data_type), layout, CHANNELS_FIRST.flatten, role,
                          candidate)
        self.entries[name] = Entry(info, tensor, quant)
        self._placed.add(id(tensor))
        return True


def list_tensors(uses: list[Use], everything: list[StoredTensor]) -> dict[str, Entry]:
    """Every tensor once: weights where their node is, other consumed tensors where first used, the rest last."""
    weights = {id(u.tensor) for u in uses if u.weight}
    listing = Listing()
    for use in uses:
        if use.weight is not None:
            _place_weight(listing, use)
        elif id(use.tensor) not in weights:
            listing.place(use.tensor, "auto", use.role, False)
    for t in everything:
        listing.place(t, "auto", "not consumed by any node", False)
    if not weights:
        _offer_matrices(listing)
    return listing.entries


def _place_weight(listing: Listing, use: Use) -> None:
    assert use.weight is not None
    traced, op, node = use.weight
    t = use.tensor
    role = f"weight of the {'' if listing.weights else 'first '}{node.label}{use.role}"
    if traced.via:
        role += f", through {' <- '.join(traced.via)}"
    if traced.quant:
        role += f" ({traced.quant.how})"
    layout = stored_layout(weight_layout(op, node, len(t.dims)), traced.perms, len(t.dims))
    if listing.place(t, layout, role, True, traced.quant):
        listing.weights += 1


def _offer_matrices(listing: Listing) -> None:
    """No weight could be traced (reshaped or computed): offer matrices by name, saying so."""
    for name, e in listing.entries.items():
        if is_weight(name, e.info.shape):
            role = _UNTRACED.format(rank=len(e.info.shape))
            listing.entries[name] = Entry(dataclasses.replace(e.info, role=role, candidate=True), e.tensor, e.quant)
