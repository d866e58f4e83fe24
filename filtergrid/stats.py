"""Per-filter statistics shared by the audit's health record and ``compare`` (neither owns the other)."""

from __future__ import annotations

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
