"""Weights to display values in [0, 1]: four ways to choose what black and white mean.

Everything works on the whole (filters, H, W, C) array at once; non-finite weights take no part in
any statistic and come out as NaN, for the colouring step to paint them in the NaN colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Display value of a tile (or bank) whose weights are all equal: there is no contrast to show.
MID_GRAY = 0.5


@dataclass(frozen=True)
class Normalized:
    """Display values (float32, [0, 1], NaN where the weight was NaN or infinite)."""

    unit: np.ndarray
    constant_filters: int


def normalize(array: np.ndarray, mode: str) -> Normalized:
    """Map a non-empty (filters, H, W, C) float32 array to [0, 1] by ``mode`` (see ``NORMALIZATIONS``)."""
    finite = np.isfinite(array)
    lo, hi, has_finite = _filter_ranges(array, finite)
    constant = int(np.count_nonzero(has_finite & (lo == hi)))
    if mode == "per-filter":  # CS231n: every filter uses its full contrast; shapes, not sizes
        unit = _min_max(array, lo[:, None, None, None], hi[:, None, None, None])
    elif mode == "global":  # one scale for all: a weak filter looks faint
        unit = _min_max(array, lo.min(), hi.max())
    elif mode == "symmetric":  # zero is mid-gray, sign is brightness, scaled by the largest |w|
        peak = np.float32(max(-lo.min(), hi.max()))
        unit = array / peak * np.float32(0.5) + np.float32(MID_GRAY) if peak > 0 else _flat(array)
    elif mode == "percentile":  # one outlier weight must not wash out every other filter
        values = array[finite]
        p_lo, p_hi = np.percentile(values, (1, 99)).astype(np.float32) if values.size else (0, 0)
        unit = _min_max(np.clip(array, p_lo, p_hi), p_lo, p_hi)
    else:
        raise ValueError(f"unknown normalization {mode!r}")
    unit = np.where(finite, unit, np.float32(np.nan)).astype(np.float32, copy=False)
    return Normalized(unit, constant)


def _filter_ranges(array: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-filter min and max over finite values, and whether the filter has any (else 0, 0)."""
    axes = (1, 2, 3)
    lo = np.where(finite, array, np.float32(np.inf)).min(axis=axes)
    hi = np.where(finite, array, np.float32(-np.inf)).max(axis=axes)
    has_finite = lo <= hi
    return np.where(has_finite, lo, 0).astype(np.float32), np.where(has_finite, hi, 0).astype(np.float32), has_finite


def _min_max(array: np.ndarray, lo, hi) -> np.ndarray:
    """(array - lo) / (hi - lo), mid-gray wherever the range is zero (never a division by zero).

    Halves first, so weights near the float32 limit cannot overflow the subtraction.
    """
    half_lo = np.float32(0.5) * np.asarray(lo, dtype=np.float32)
    span = np.float32(0.5) * np.asarray(hi, dtype=np.float32) - half_lo
    safe = np.where(span > 0, span, np.float32(1))
    with np.errstate(invalid="ignore"):
        scaled = (np.float32(0.5) * array - half_lo) / safe
    return np.where(span > 0, scaled, np.float32(MID_GRAY))


def _flat(array: np.ndarray) -> np.ndarray:
    return np.full(array.shape, MID_GRAY, dtype=np.float32)
