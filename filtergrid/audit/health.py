"""First-layer health from a FilterBank: numbers a reviewer checks before trusting a checkpoint.

Every statistic is over the bank's filters (the rows of a matrix heatmap count as its filters):
non-finite weights, dead filters (all weights tiny next to the bank's largest), near-duplicate
filters (cosine similarity above :data:`DUPLICATE_COSINE`), per-filter L2 norms, the value range and
moments, and for quantized sources the share of weights pinned at the ends of the integer range.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..bank import FilterBank
from ..stats import filters_of, json_number, moments

#: A filter is dead when every |weight| is below this fraction of the bank's largest |weight|.
DEAD_RELATIVE = 1e-3
#: Two filters are near-duplicates when the cosine of their flattened weights exceeds this.
DUPLICATE_COSINE = 0.999
#: Duplicate search compares every pair among at most this many filters (a seeded sample beyond).
MAX_DUPLICATE_FILTERS = 4096
#: Rows of the similarity matrix computed at once (bounds memory at ROWS x filters floats).
SIMILARITY_BLOCK_ROWS = 256
#: Pairs listed by index in the report (the count is always complete).
LISTED_PAIRS = 10
#: Dead filters listed by index in the report (the count is always complete).
LISTED_DEAD = 64

_INTEGER_DTYPES = re.compile(r"^u?int\d+$")
_BLOCK_QUANT = re.compile(r"^(i?q\d|tq\d)", re.IGNORECASE)  # GGUF Q8_0, Q4_K, IQ2_XS, TQ1_0, ...


def duplicate_pairs(unit: np.ndarray, live: np.ndarray) -> tuple[int, int, list[list[int]], bool]:
    """(filters with a near-twin, pairs, first pairs, sampled?) by cosine over unit-norm rows."""
    index = np.flatnonzero(live)
    sampled = index.size > MAX_DUPLICATE_FILTERS
    if sampled:
        index = np.sort(np.random.default_rng(0).choice(index, MAX_DUPLICATE_FILTERS, replace=False))
    rows = unit if index.size == len(unit) else unit[index]
    twins = np.zeros(index.size, bool)
    pairs = 0
    listed: list[list[int]] = []
    for start in range(0, index.size, SIMILARITY_BLOCK_ROWS):
        block = rows[start:start + SIMILARITY_BLOCK_ROWS] @ rows.T
        i, j = np.nonzero(np.triu(block > DUPLICATE_COSINE, k=start + 1))
        pairs += i.size
        twins[i + start] = True
        twins[j] = True
        listed.extend([int(index[a + start]), int(index[b])] for a, b in zip(i[:LISTED_PAIRS], j[:LISTED_PAIRS]))
    return int(twins.sum()), pairs, listed[:LISTED_PAIRS], sampled


def saturation(clean: np.ndarray, original_dtype: str) -> float | None:
    """Share of weights at the ends of the integer range, for integer or quantized sources, else None.

    Raw integers (a NumPy int8 array) are checked against their dtype's exact range. Dequantized
    values (int8 scaled back to floats, GGUF blocks) carry no scale in the bank, so each filter's own
    min and max stand for the ends of the range: that is exact for per-channel symmetric
    quantization, the common case for weights; at least 2 weights per filter are there by design.
    ``clean`` holds the weights with non-finite ones set to 0.
    """
    if clean.size == 0 or not (_INTEGER_DTYPES.match(original_dtype) or _BLOCK_QUANT.match(original_dtype)):
        return None
    if _INTEGER_DTYPES.match(original_dtype) and np.array_equal(clean, np.round(clean)):
        lo, hi = _integer_range(original_dtype)
        return float(np.mean((clean == lo) | (clean == hi)))
    at_ends = (clean == clean.min(axis=1, keepdims=True)) | (clean == clean.max(axis=1, keepdims=True))
    return float(at_ends.mean())


def _integer_range(dtype: str) -> tuple[int, int]:
    try:
        info = np.iinfo(np.dtype(dtype))
    except TypeError:  # int4 and other types NumPy lacks
        bits = int(re.sub(r"\D", "", dtype))
        return (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return int(info.min), int(info.max)


def assess(bank: FilterBank) -> dict[str, Any]:
    """The health record of one bank (JSON-ready; see docs/audit-report.md for each field).

    Memory: the bank, one cleaned copy (normalized in place for the duplicate search) and
    row-sized vectors; the similarity matrix is computed in blocks.
    """
    values = filters_of(bank)
    n, d = values.shape
    finite = np.isfinite(values)
    nan = int(np.isnan(values).sum())
    health: dict[str, Any] = {"filters": n, "weights_per_filter": d, "nan": nan,
                              "inf": int(finite.size - finite.sum()) - nan, **moments(values, finite)}
    clean = np.where(finite, values, np.float32(0))
    del finite
    health["saturated_fraction"] = saturation(clean, bank.provenance.original_dtype)
    peaks = np.abs(clean).max(axis=1) if clean.size else np.zeros(n, np.float32)
    largest = float(peaks.max()) if n else 0.0
    dead = peaks <= DEAD_RELATIVE * largest if largest > 0 else np.ones(n, bool)
    norms = np.sqrt(np.einsum("ij,ij->i", clean, clean, dtype=np.float64))
    clean /= np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]  # now unit rows
    dup_filters, dup_pairs, listed, sampled = duplicate_pairs(clean, ~dead & (norms > 0))
    health.update({
        "dead_filters": int(dead.sum()),
        "dead_indices": np.flatnonzero(dead)[:LISTED_DEAD].tolist(),
        "duplicate_filters": dup_filters,
        "duplicate_pairs": dup_pairs,
        "duplicate_examples": listed,
        "duplicates_sampled": sampled,
        "l2_min": json_number(norms.min()) if n else None,
        "l2_median": json_number(np.median(norms)) if n else None,
        "l2_max": json_number(norms.max()) if n else None,
    })
    health["flags"] = flags(health)
    return health


def flags(health: dict[str, Any]) -> list[str]:
    """Short words for what deserves a look: nonfinite, dead, duplicates, saturated."""
    out = []
    if health["nan"] or health["inf"]:
        out.append("nonfinite")
    if health["dead_filters"]:
        out.append("dead")
    if health["duplicate_filters"]:
        out.append("duplicates")
    saturated = health["saturated_fraction"]
    if saturated is not None and saturated > max(0.01, 4 / max(health["weights_per_filter"], 1)):
        out.append("saturated")
    return out
