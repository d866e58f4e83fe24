"""Statistics shared by the audit's health record, ``inspect`` and ``compare`` (none owns the others)."""

from __future__ import annotations

import math

import numpy as np

from .bank import FilterBank


def filters_of(bank: FilterBank) -> np.ndarray:
    """(filters, weights) float32: one row per filter, or per row of a matrix heatmap."""
    if bank.kind == "matrix":
        return bank.array[0, :, :, 0]
    return bank.array.reshape(len(bank), -1)


def row_norms(rows: np.ndarray) -> np.ndarray:
    """The L2 norm of each row, accumulated in float64 (float32 sums of squares overflow early)."""
    return np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))


def json_number(x: float) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def moments(values: np.ndarray, finite: np.ndarray) -> dict[str, float | None]:
    """min, max, mean, std over the finite weights (masked reductions: no copy of the bank)."""
    if not finite.any():
        return dict.fromkeys(("min", "max", "mean", "std"))
    mask = None if finite.all() else finite
    return {
        "min": json_number(np.min(values, where=mask, initial=np.inf) if mask is not None else values.min()),
        "max": json_number(np.max(values, where=mask, initial=-np.inf) if mask is not None else values.max()),
        "mean": json_number(np.mean(values, where=mask, dtype=np.float64) if mask is not None else values.mean(dtype=np.float64)),
        "std": json_number(np.std(values, where=mask, dtype=np.float64) if mask is not None else values.std(dtype=np.float64)),
    }
