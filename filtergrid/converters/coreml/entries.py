"""What the NeuralNetwork and ML Program walkers hand the reader: a listed tensor and how to decode it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...bank import TensorInfo


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str
    role: str
    candidate: bool
    where: str  # the layer or op it belongs to ("" for biases)
    decode: Callable[[], np.ndarray]

    def info(self, rank: int) -> TensorInfo:
        """The listing entry; ``rank`` counts weight-bearing layers (0 = the first layer)."""
        role = self.role
        if self.candidate:
            role = (f"first weight-bearing layer in the model's order: {role}" if rank == 0
                    else f"{role} (weight-bearing layer #{rank + 1})")
        # Core ML is channels-first: a dense layer after Flatten sees C,H,W-ordered inputs.
        return TensorInfo(self.name, self.shape, self.dtype, self.layout, "CHW", role, self.candidate)
