"""Weights to display values in [0, 1]: four ways to choose what black and white mean.

Everything works on the whole (filters, H, W, C) array at once; non-finite weights take no part in
any statistic and come out as NaN, for the colouring step to paint them in the NaN colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Display value of a tile (or bank) whose weights are all equal: there is no contrast to show.
MID_GRAY = 0.5
#: A filter whose weights span less than this fraction of the bank's largest |weight| counts as
#: constant: per-filter scaling would blow a dead filter's leftovers (|w| ~ 1e-14 after weight decay,
#: 79 of musicnn's 128 first-layer filters) up to full contrast, a picture of nothing that looks learned.
FLAT_RELATIVE = 1e-6


@dataclass(frozen=True)
class Normalized:
    """Display values (float32, [0, 1], NaN where the weight was NaN or infinite).

    ``value_range`` is the (low, high) weight drawn as 0 and 1 when one range serves every tile
    (what a colour bar shows); ``None`` for per-filter scaling, where each tile has its own.
    """

    unit: np.ndarray
    constant_filters: int
    value_range: tuple[float, float] | None


def normalize(array: np.ndarray, mode: str, value_range: tuple[float, float] | None = None) -> Normalized:
    """Map a non-empty (filters, H, W, C) float32 array to [0, 1] by ``mode`` (see ``NORMALIZATIONS``).

    ``value_range`` fixes the weights drawn as 0 and 1 for every tile, whatever the mode.
    """
    finite = np.isfinite(array)
    lo, hi, has_finite = _filter_ranges(array, finite)
    flat = _flat(lo, hi, has_finite)
    constant = int(np.count_nonzero(flat))
    if value_range is None and mode == "per-filter":  # CS231n: every filter at full contrast; shapes, not sizes
        top = np.where(flat, lo, hi)  # a flat filter: no range, mid-gray
        unit = _min_max(array, lo[:, None, None, None], top[:, None, None, None])
        return Normalized(_nan_where_not(finite, unit), constant, None)
    low, high = value_range if value_range is not None else _shared_range(
        array, finite, lo[has_finite], hi[has_finite], mode)
    low, high = np.float32(low), np.float32(high)
    unit = _min_max(np.clip(array, low, high), low, high)
    return Normalized(_nan_where_not(finite, unit), constant, (float(low), float(high)))


def _shared_range(array: np.ndarray, finite: np.ndarray, lo: np.ndarray, hi: np.ndarray, mode: str) -> tuple:
    """The one (low, high) of a mode that scales every tile alike; ``lo``/``hi`` of the filters that
    have a finite weight (the others' placeholder 0 must not stretch the range)."""
    if mode == "global":  # one scale for all: a weak filter looks faint
        return (lo.min(), hi.max()) if lo.size else (0.0, 0.0)
    if mode == "symmetric":  # zero is mid-gray, sign is brightness, scaled by the largest |w|
        peak = max(-lo.min(initial=0), hi.max(initial=0))
        return (-peak, peak) if peak > 0 else (-1.0, 1.0)
    if mode == "percentile":  # one outlier weight must not wash out every other filter
        values = array[finite]
        return tuple(np.percentile(values, (1, 99))) if values.size else (0.0, 0.0)
    if mode == "none":  # the values are display values already (torchvision's normalize=False)
        return 0.0, 1.0
    raise ValueError(f"unknown normalization {mode!r}")


def _nan_where_not(finite: np.ndarray, unit: np.ndarray) -> np.ndarray:
    return np.where(finite, unit, np.float32(np.nan))  # unit is float32: so is the result


def _filter_ranges(array: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-filter min and max over finite values, and whether the filter has any (else 0, 0)."""
    axes = (1, 2, 3)
    lo = np.where(finite, array, np.float32(np.inf)).min(axis=axes)
    hi = np.where(finite, array, np.float32(-np.inf)).max(axis=axes)
    has_finite = lo <= hi
    return np.where(has_finite, lo, np.float32(0)), np.where(has_finite, hi, np.float32(0)), has_finite


def _flat(lo: np.ndarray, hi: np.ndarray, has_finite: np.ndarray) -> np.ndarray:
    """Filters whose range is no contrast next to the bank's largest |weight| (see FLAT_RELATIVE)."""
    peak = max(float(np.abs(lo).max()), float(np.abs(hi).max()))  # a bank has at least one filter
    half_span = np.float32(0.5) * hi - np.float32(0.5) * lo  # halves: no overflow near the float32 limit
    return has_finite & (half_span <= np.float32(0.5 * FLAT_RELATIVE * peak))


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
