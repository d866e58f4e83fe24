"""Core ML's ``constexpr_*`` decompression ops against references written from their specification
(coremltools ``mil/ops/defs/iOS16|iOS18/constexpr_ops.py``), element by element, not with the
vectorised code under test. The fixtures in ``coreml/`` check the same ops end to end against
coremltools' own ``decompress_weights``; these pin the cases those files do not reach."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from filtergrid.converters.coreml import constexpr
from filtergrid.errors import CorruptFileError

RNG = np.random.default_rng(7)


def affine_reference(codes, scale, zero, axis):
    out = np.empty(codes.shape, np.float32)
    for index in np.ndindex(*codes.shape):
        k = index[axis] if scale.size > 1 else 0
        out[index] = (np.float32(codes[index]) - np.float32(zero.ravel()[k if zero.size > 1 else 0])) * np.float32(scale.ravel()[k])
    return out


@pytest.mark.parametrize("axis", [0, 1, 3, -4, -1])
def test_affine_dequantize_uses_one_scale_and_zero_point_per_slice_along_its_axis(axis):
    codes = RNG.integers(0, 256, (2, 3, 2, 4)).astype(np.uint8)
    n = codes.shape[axis]
    scale = RNG.uniform(0.01, 0.1, n).astype(np.float32)
    zero = RNG.integers(100, 150, n).astype(np.uint8)
    got = constexpr.affine_dequantize({"quantized_data": codes, "scale": scale, "zero_point": zero,
                                       "axis": np.array(axis, np.int32)})
    np.testing.assert_array_equal(got, affine_reference(codes, scale, zero, axis % 4))


def test_affine_dequantize_with_one_scale_ignores_the_axis():
    codes = RNG.integers(-128, 128, (3, 2, 2, 2)).astype(np.int8)
    scale, zero = np.array(0.05, np.float32), np.array(3, np.int8)
    got = constexpr.affine_dequantize({"quantized_data": codes, "scale": scale, "zero_point": zero,
                                       "axis": np.array(0, np.int32)})
    np.testing.assert_array_equal(got, affine_reference(codes, scale, zero, 0))


@pytest.mark.parametrize("axis", [np.array(4, np.int32), np.array(-5, np.int32), np.array([0, 1], np.int32),
                                  np.zeros(0, np.int32)])
def test_affine_dequantize_refuses_an_axis_the_tensor_does_not_have(axis):
    codes = np.zeros((2, 3, 2, 4), np.uint8)
    with pytest.raises(CorruptFileError, match=r"constexpr_affine_dequantize: axis .* of a rank-4 tensor"):
        constexpr.affine_dequantize({"quantized_data": codes, "scale": np.ones(2, np.float32),
                                     "zero_point": np.zeros(2, np.uint8), "axis": axis})


def pack_lsb_first(codes: np.ndarray, nbits: int) -> np.ndarray:
    """coremltools' iOS16 packing: each code's bits, low bit first, back to back from bit 0 of byte 0."""
    bits = [(int(c) >> b) & 1 for c in codes.ravel() for b in range(nbits)]
    bits += [0] * (-len(bits) % 8)
    return np.array([sum(bit << i for i, bit in enumerate(bits[k:k + 8])) for k in range(0, len(bits), 8)], np.uint8)


@pytest.mark.parametrize("nbits", [1, 2, 4, 6, 8])
def test_ios16_lut_to_dense_unpacks_indices_low_bit_first_for_each_allowed_width(nbits):
    shape = (3, 2, 3, 3)
    codes = RNG.integers(0, 1 << nbits, shape)
    lut = RNG.normal(size=1 << nbits).astype(np.float16)
    got = constexpr.lut_to_dense({"indices": pack_lsb_first(codes, nbits), "lut": lut,
                                  "shape": np.array(shape, np.uint32)})
    expected = np.array([lut[c] for c in codes.ravel()], np.float16).reshape(shape)
    assert got.shape == shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [0, 3, 8, 32, 512])
def test_ios16_lut_to_dense_refuses_a_table_that_is_not_2_4_16_64_or_256_values(size):
    with pytest.raises(CorruptFileError, match=f"a table of {size} values"):
        constexpr.lut_to_dense({"indices": np.zeros(8, np.uint8), "lut": np.zeros(size, np.float32),
                                "shape": np.array([4, 4], np.uint32)})


def test_ios18_lut_to_sparse_expands_each_set_bit_to_a_whole_vector():
    """Vector palettization of a pruned weight: one code (and one mask bit) per vector of 2 values
    along axis 0; the op returns the mask of the dense weight and its non-zero values in order."""
    codes_mask = np.array([[1, 0, 1], [0, 1, 1]], np.uint8)  # (2, 3) codes, vectors along axis 0
    nonzero_codes = np.array([3, 0, 2, 1], np.uint8)
    lut = RNG.normal(size=(1, 1, 4, 2)).astype(np.float32)  # one table of 4 vectors of 2
    mask, values = constexpr.lut_to_sparse({"indices_mask": codes_mask, "indices_nonzero_data": nonzero_codes,
                                            "lut": lut, "vector_axis": np.array(0, np.int32)})
    dense = np.zeros((4, 3), np.float32)
    codes = iter(nonzero_codes)
    for i, j in itertools.product(range(2), range(3)):  # row-major order of the code grid
        if codes_mask[i, j]:
            dense[2 * i: 2 * i + 2, j] = lut[0, 0, next(codes)]
    expected_mask = np.repeat(codes_mask, 2, axis=0)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(values, dense[expected_mask != 0])


def test_ios18_sparse_blockwise_shift_scale_subtracts_each_blocks_offset():
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], np.uint8)
    nonzero = np.array([1, -2, 3, 4, 5, -6], np.int8)
    scale = np.array([[0.5, 0.25]], np.float32)  # blocks of (2, 2)
    offset = np.array([[1, -1]], np.int8)
    got_mask, values = constexpr.sparse_blockwise_shift_scale({"data_mask": mask, "nonzero_data": nonzero,
                                                               "scale": scale, "offset": offset})
    dense = np.zeros((2, 4), np.int8)
    dense[mask != 0] = nonzero
    expected = np.array([[scale[0, j // 2] * (dense[i, j] - offset[0, j // 2]) for j in range(4)] for i in range(2)],
                        np.float32)
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(values, expected[mask != 0])
