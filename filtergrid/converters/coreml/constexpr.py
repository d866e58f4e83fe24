"""Core ML's compile-time decompression ops (``constexpr_*``): what each computes from its constants.

coremltools' ``optimize.coreml`` writes compressed weights as these ops (iOS16: parameters as
attributes; iOS18: as inputs, with sub-byte tensors and block-wise/grouped forms). Their semantics are
those of coremltools' ``decompress`` for each op (``coremltools/converters/mil/mil/ops/defs``); the
arithmetic itself lives in :mod:`filtergrid.dtypes`. Each function takes the op's decoded parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ... import dtypes
from ...errors import CorruptFileError

Params = dict[str, np.ndarray]


def affine_dequantize(p: Params) -> np.ndarray:
    """iOS16 ``(quantized_data - zero_point) * scale`` along ``axis`` (one scale, or one per slice)."""
    codes, scale, zero = p["quantized_data"], p["scale"].ravel(), p["zero_point"].ravel()
    axes = p["axis"].reshape(-1)
    if axes.size != 1 or not -codes.ndim <= int(axes[0]) < codes.ndim:
        raise CorruptFileError(f"constexpr_affine_dequantize: axis {axes[:4].tolist()} of a rank-{codes.ndim} tensor")
    return dtypes.dequantize(codes, scale, zero, int(axes[0]))


def lut_to_dense(p: Params) -> np.ndarray:
    """Palettized weights: iOS16 packs ``log2(len(lut))``-bit indices into bytes for a flat ``shape``;
    iOS18 gives shaped indices and a grid of (vector) tables (:func:`dtypes.lookup`)."""
    if "shape" in p:  # iOS16
        lut, shape = p["lut"].reshape(-1), _shape(p["shape"])
        nbits = int(math.log2(lut.size)) if lut.size else 0
        if lut.size != 1 << nbits or nbits not in (1, 2, 4, 6, 8):
            raise CorruptFileError(f"constexpr_lut_to_dense: a table of {lut.size} values (not 2, 4, 16, 64 or 256)")
        codes = dtypes.unpack_bits(p["indices"].tobytes(), nbits, math.prod(shape), "lsb")
        return dtypes.lookup(codes.reshape(shape), lut)
    return dtypes.lookup(p["indices"], p["lut"], _vector_axis(p))


def sparse_to_dense(p: Params) -> np.ndarray:
    """Pruned weights: iOS16 packs the mask's bits (low bit first) for a flat ``shape``; iOS18 gives
    a shaped ``uint1`` mask."""
    mask = p["mask"]
    if "shape" in p:  # iOS16
        shape = _shape(p["shape"])
        mask = dtypes.unpack_bits(mask.tobytes(), 1, math.prod(shape), "lsb").reshape(shape)
    return dtypes.sparse_to_dense(p["nonzero_data"], mask)


def blockwise_shift_scale(p: Params) -> np.ndarray:
    """iOS18 block-wise ``scale * (data - offset)``."""
    return dtypes.blockwise(p["data"], p["scale"], p.get("offset"))


def lut_to_sparse(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """iOS18 palettized values of a pruned weight: (the mask, the looked-up non-zero values)."""
    mask = p["indices_mask"]
    indices = dtypes.sparse_to_dense(p["indices_nonzero_data"], mask)
    vector_axis = _vector_axis(p)
    dense = dtypes.lookup(indices, p["lut"], vector_axis)
    if vector_axis is not None and dense.shape != mask.shape:  # vectors: each set bit stands for a whole vector
        mask = np.repeat(mask, dense.shape[vector_axis] // mask.shape[vector_axis], axis=vector_axis)
    return mask, dense[mask != 0]


def sparse_blockwise_shift_scale(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """iOS18 quantized values of a pruned weight: (the mask, the dequantized non-zero values)."""
    mask = p["data_mask"]
    dense = dtypes.blockwise(dtypes.sparse_to_dense(p["nonzero_data"], mask), p["scale"], p.get("offset"))
    return mask, dense[mask != 0]


def _shape(value: np.ndarray) -> tuple[int, ...]:
    return dtypes.check_shape(value.reshape(-1).tolist())


def _vector_axis(p: Params) -> int | None:
    return int(p["vector_axis"].reshape(-1)[0]) if p.get("vector_axis") is not None else None


#: op type -> (required parameters, optional parameters, the parameter holding the stored codes, decoder)
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, Callable]] = {
    "constexpr_affine_dequantize": (("quantized_data", "zero_point", "scale", "axis"), (), "quantized_data",
                                    affine_dequantize),
    "constexpr_lut_to_dense": (("indices", "lut"), ("shape", "vector_axis"), "indices", lut_to_dense),
    "constexpr_sparse_to_dense": (("nonzero_data", "mask"), ("shape",), "nonzero_data", sparse_to_dense),
    "constexpr_blockwise_shift_scale": (("data", "scale"), ("offset",), "data", blockwise_shift_scale),
    "constexpr_lut_to_sparse": (("indices_mask", "indices_nonzero_data", "lut"), ("vector_axis",),
                                "indices_nonzero_data", lut_to_sparse),
    "constexpr_sparse_blockwise_shift_scale": (("data_mask", "nonzero_data", "scale"), ("offset",), "nonzero_data",
                                               sparse_blockwise_shift_scale),
}
