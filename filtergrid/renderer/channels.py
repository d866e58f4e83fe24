"""Which channels a tile shows: RGB as is, one gray tile per channel, their mean, or the first three."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def select(array: np.ndarray, mode: str, bgr: bool) -> np.ndarray:
    """The (N, H, W, C') channels to show; ``split`` keeps them all, to be cut into tiles later."""
    channels = array.shape[-1]
    if bgr and channels >= 3:
        array = np.concatenate([array[..., 2::-1], array[..., 3:]], axis=-1)
    if channels in (1, 3) or mode == "split":
        return array
    if mode == "mean":
        # float64 accumulator: a sum of weights near the float32 limit must not overflow to inf
        return array.mean(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    if channels < 3:
        raise UsageError(f"channels first3 needs at least 3 channels, these filters have {channels}; use split or mean")
    return array[..., :3]


def is_split(channels: int, mode: str) -> bool:
    """Filters that are neither gray nor RGB are shown one channel per tile in ``split`` mode."""
    return mode == "split" and channels not in (1, 3)


def split(unit: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N * C, H, W, 1): filter n's channels become the n-th row of tiles."""
    n, h, w, c = unit.shape
    return unit.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
