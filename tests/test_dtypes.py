"""Element-type decoding and dequantization, shared by every converter."""

import numpy as np
import pytest

from filtergrid import dtypes, limits
from filtergrid.errors import CorruptFileError, LimitError


def test_bfloat16_bits_decode_exactly():
    values = np.array([1.0, -2.5, 3.140625, 0.0, np.inf], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # bf16 = the high half of a float32
    np.testing.assert_array_equal(dtypes.to_float32(bits, "bfloat16"), values)


def test_float8_tables_match_known_values():
    e4m3 = dtypes.to_float32(np.array([0x38, 0x40, 0xB8, 0x7E, 0x01, 0x7F], dtype=np.uint8), "float8_e4m3fn")
    np.testing.assert_array_equal(e4m3[:5], [1.0, 2.0, -1.0, 448.0, 2.0**-9])
    assert np.isnan(e4m3[5])
    e5m2 = dtypes.to_float32(np.array([0x3C, 0x7C], dtype=np.uint8), "float8_e5m2")
    np.testing.assert_array_equal(e5m2, [1.0, np.inf])


def test_dequantize_per_tensor_and_per_axis():
    q = np.array([[0, 10], [20, 30]], dtype=np.int8)
    np.testing.assert_allclose(dtypes.dequantize(q, 0.5, 10), [[-5, 0], [5, 10]])
    out = dtypes.dequantize(q, [1.0, 0.1], [0, 10], axis=0)
    np.testing.assert_allclose(out, [[0, 10], [1, 2]], rtol=1e-6)
    with pytest.raises(CorruptFileError):
        dtypes.dequantize(q, [1.0, 2.0, 3.0], 0, axis=0)


def test_dequantize_first_rows_cuts_per_axis_scales():
    """``rows=`` reads: scales along axis 0 are checked against the full length, then cut."""
    q = np.arange(12, dtype=np.int8).reshape(4, 3)
    scales, zeros = np.array([1.0, 0.5, 0.25, 2.0]), np.array([0, 1, 2, 3])
    whole = dtypes.dequantize(q, scales, zeros, axis=0)
    np.testing.assert_array_equal(dtypes.dequantize(q[:2], scales, zeros, axis=0, length=4), whole[:2])
    np.testing.assert_array_equal(dtypes.dequantize(q, scales, zeros, axis=0, length=4), whole)
    with pytest.raises(CorruptFileError, match="4 scales"):  # the file has 5 rows but 4 scales
        dtypes.dequantize(q[:2], scales, zeros, axis=0, length=5)
    with pytest.raises(CorruptFileError):  # more rows than the tensor has
        dtypes.dequantize(np.zeros((5, 3), np.int8), scales, zeros, axis=0, length=4)
    # along another axis the rows read do not touch the scales
    by_column = dtypes.dequantize(q[:2], scales[:3], zeros[:3], axis=1, length=4)
    np.testing.assert_array_equal(by_column, dtypes.dequantize(q, scales[:3], zeros[:3], axis=1)[:2])


def test_check_fits_refuses_declared_sizes_the_bytes_cannot_hold():
    with pytest.raises(CorruptFileError, match="only 10 bytes"):
        dtypes.check_fits((100,), "float32", 10, "tensor")
    with pytest.raises(CorruptFileError):
        dtypes.check_shape((-1, 3))


def test_tensor_size_limit(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 1000)
    with pytest.raises(LimitError, match="MAX_TENSOR_BYTES"):
        dtypes.check_shape((1000,))
    dtypes.check_shape((250,))


def test_refusals_name_the_element_type_and_the_tensor():
    with pytest.raises(CorruptFileError, match="unsupported element type 'int4'"):
        dtypes.itemsize("int4")
    with pytest.raises(CorruptFileError, match=r"^tensor declares \[3\] float32 = 12 bytes"):
        dtypes.from_buffer(bytes(8), "float32", (3,))


def test_from_buffer_offset_leaves_fewer_bytes():
    buffer = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    np.testing.assert_array_equal(dtypes.from_buffer(buffer, "float32", (2,), offset=4), [2.0, 3.0])
    with pytest.raises(CorruptFileError, match="only 8 bytes"):  # 12 bytes, 4 skipped: 3 floats do not fit
        dtypes.from_buffer(buffer, "float32", (3,), offset=4)


def test_dequantize_defaults_and_scalar_scales():
    q = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    np.testing.assert_array_equal(dtypes.dequantize(q, 0.5), [[0, 5], [10, 15]])  # zero point 0 by default
    # ONNX: with one scale the axis attribute is ignored (per-tensor)
    for scale in (0.5, [0.5]):
        np.testing.assert_array_equal(dtypes.dequantize(q, scale, 10, axis=1), [[-5, 0], [5, 10]])
    with pytest.raises(CorruptFileError, match="per-tensor quantization with 2 scales and 1 zero points"):
        dtypes.dequantize(q, [0.5, 1.0], 10)  # several scales need an axis


def test_dequantized_values_are_float32_in_the_shape_of_q_whatever_the_rank_of_one_scale():
    """A single scale or zero point stored as a (1, 1, 1) tensor still applies per tensor."""
    q = np.array([[0, 10], [20, 30]], dtype=np.int8)
    one = np.full((1, 1, 1), 0.5)
    for out in (dtypes.dequantize(q, one, np.zeros((1, 1, 1), np.int64)),
                dtypes.dequantize(q, [0.5, 0.5], np.zeros((1, 1, 1), np.int64), axis=0)):
        assert out.shape == (2, 2) and out.dtype == np.float32
        np.testing.assert_array_equal(out, [[0, 5], [10, 15]])


def test_a_0d_quantized_value_dequantizes_to_a_0d_array_not_a_scalar():
    """torch.save of quantize_per_tensor(torch.tensor(0.5), 0.1, 2): Reader.read must return an ndarray."""
    out = dtypes.dequantize(np.array(7, np.int8), 0.1, 2)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32 and out == np.float32(0.5)


def test_per_axis_scales_with_one_zero_point_and_first_rows():
    q = np.array([[0, 10], [20, 30]], dtype=np.int8)
    np.testing.assert_array_equal(dtypes.dequantize(q, [1.0, 0.5], 0, axis=0), [[0, 10], [10, 15]])
    first = dtypes.dequantize(q[:1], [1.0, 0.5], [4, 8], axis=0, length=2)  # row 0 uses scale 1, zero 4
    assert first.shape == (1, 2)
    np.testing.assert_array_equal(first, [[-4, 6]])


def test_unpack_sub_byte_codes_in_either_bit_order():
    assert dtypes.unpack_bits(bytes([0x21, 0x43]), 4, 4, "lsb").tolist() == [1, 2, 3, 4]  # low nibble first
    assert dtypes.unpack_bits(bytes([0x21, 0x43]), 4, 4, "msb").tolist() == [2, 1, 4, 3]
    assert dtypes.unpack_bits(bytes([0b00100111]), 2, 4, "lsb").tolist() == [3, 1, 2, 0]
    assert dtypes.unpack(bytes([0xF8, 0x7E]), "int4", (2, 2), "lsb").tolist() == [[-8, -1], [-2, 7]]
    assert dtypes.unpack(bytes([0xFF]), "uint3", (2,), "lsb").tolist() == [7, 7]  # 6 of 8 bits used
    assert dtypes.packed_nbytes((3, 3), "uint4") == 5
    # OpenVINO u3/u6 in 3-byte groups; the codes are what OpenVINO 2026.4's CPU plugin decodes from these bytes
    groups = bytes([0b00011011, 0b11100100, 0b10101010, 0x12, 0x34, 0x0F])
    assert dtypes.unpack(groups, "uint3", (16,), "split").tolist() == [4, 1, 6, 3, 7, 2, 5, 0, 0, 1, 0, 2, 4, 7, 5, 4]
    assert dtypes.unpack(groups, "uint6", (8,), "split").tolist() == [33, 43, 46, 36, 1, 2, 51, 52]
    assert dtypes.packed_nbytes((10,), "uint3", "split") == 6
    with pytest.raises(CorruptFileError, match="need 2 bytes, 1 are stored"):
        dtypes.unpack(bytes([0x21]), "uint4", (3,), "lsb")


def test_four_bit_and_power_of_two_code_tables():
    codes = np.arange(16, dtype=np.uint8)
    e2m1 = dtypes.to_float32(codes, "float4_e2m1")
    np.testing.assert_array_equal(e2m1[:8], [0, 0.5, 1, 1.5, 2, 3, 4, 6])
    np.testing.assert_array_equal(e2m1[8:], -e2m1[:8])
    nf4 = dtypes.to_float32(codes, "nf4")
    assert nf4[0] == -1 and nf4[7] == 0 and nf4[15] == 1 and np.all(np.diff(nf4) > 0)
    e8m0 = dtypes.to_float32(np.array([127, 128, 120, 255], dtype=np.uint8), "float8_e8m0")
    np.testing.assert_array_equal(e8m0[:3], [1.0, 2.0, 2.0**-7])
    assert np.isnan(e8m0[3])


def test_lookup_tables_per_block_and_vectors():
    codes = np.array([[0, 1], [1, 0], [0, 0], [1, 1]], dtype=np.uint8)
    tables = np.array([[10.0, 11.0], [20.0, 21.0]]).reshape(2, 1, 2, 1)  # rows 0-1 and rows 2-3
    np.testing.assert_array_equal(dtypes.lookup(codes, tables), [[10, 11], [11, 10], [20, 20], [21, 21]])
    vectors = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)  # code -> 2 values down axis 0
    np.testing.assert_array_equal(dtypes.lookup(np.array([[0, 1]]), vectors, vector_axis=0), [[1, 3], [2, 4]])
    with pytest.raises(CorruptFileError, match="does not divide"):
        dtypes.lookup(codes, np.zeros((3, 1, 2, 1)))
    with pytest.raises(CorruptFileError, match="indexes a table of 2"):
        dtypes.lookup(codes + 1, tables)


def test_blockwise_scales_and_offsets_repeat_over_their_blocks():
    q = np.arange(8, dtype=np.int8).reshape(2, 4)
    scale = np.array([[1.0, 10.0], [100.0, 1000.0]], dtype=np.float32)  # blocks of 1 row x 2 columns
    out = dtypes.blockwise(q, scale, np.array([[0, 1], [0, 1]], dtype=np.int8))
    np.testing.assert_array_equal(out, [[0, 1, 10, 20], [400, 500, 5000, 6000]])
    with pytest.raises(CorruptFileError, match="do not divide"):
        dtypes.blockwise(q, np.ones((2, 3), np.float32))
    with pytest.raises(CorruptFileError, match="offsets of shape"):
        dtypes.blockwise(q, scale, np.zeros((1, 2)))


def test_sparse_to_dense_fills_set_bits_in_order():
    mask = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(dtypes.sparse_to_dense(np.array([5.0, 6.0]), mask), [[5, 0], [0, 6]])
    with pytest.raises(CorruptFileError, match="2 set bits for 3 values"):
        dtypes.sparse_to_dense(np.array([5.0, 6.0, 7.0]), mask)


def test_vector_tables_are_bounded_before_they_expand(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 1000)
    codes = np.zeros((10, 10), dtype=np.uint8)  # 400 float32 bytes: under the limit
    with pytest.raises(LimitError, match="MAX_TENSOR_BYTES"):
        dtypes.lookup(codes, np.zeros((1, 1, 1, 100)), vector_axis=0)  # 100 values per code: 40,000 bytes


def test_scale_offset_is_per_slice_along_axis_0_by_default_and_float32():
    """Core ML linear quantization: q * scale + bias per output channel (axis 0), or one of each."""
    q = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = dtypes.scale_offset(q, [1.0, 10.0], [0.0, 0.5])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 1, 2], [30.5, 40.5, 50.5]])
    np.testing.assert_array_equal(dtypes.scale_offset(q, [2.0], [1.0]), q * 2 + 1)  # one scale, one bias
    np.testing.assert_array_equal(dtypes.scale_offset(q, [1.0, 10.0], [1.0]), [[1, 2, 3], [31, 41, 51]])
    np.testing.assert_array_equal(dtypes.scale_offset(q, [1.0, 2.0, 3.0], [0.0], axis=1), [[0, 2, 6], [3, 8, 15]])


@pytest.mark.parametrize("scale, offset", [([1.0, 2.0, 3.0], [0.0]), ([1.0, 2.0], [0.0, 1.0, 2.0])])
def test_scale_offset_refuses_counts_that_match_no_axis(scale, offset):
    with pytest.raises(CorruptFileError, match=rf"{len(scale)} scales and {len(offset)} offsets for axis 0 of length 2"):
        dtypes.scale_offset(np.zeros((2, 2), np.uint8), scale, offset)


def test_lookup_gives_table_values_and_refuses_a_code_past_the_table():
    codes = np.array([[0, 3], [1, 1]], np.uint8)
    palette = np.array([0.5, -1.0, 2.0, 4.0], np.float16)  # Core ML palettes may be float16
    out = dtypes.lookup(codes, palette)
    np.testing.assert_array_equal(out, [[0.5, 4.0], [-1.0, -1.0]])
    with pytest.raises(CorruptFileError, match="a code 4 indexes a table of 4 values"):
        dtypes.lookup(np.array([4], np.uint8), palette)


def test_integer_fields_are_cut_to_the_element_width_and_bools_are_nonzero():
    np.testing.assert_array_equal(dtypes.from_integer_fields(np.array([0, 1, 256]), "bool"), [False, True, True])
    assert dtypes.from_integer_fields(np.array([0, 5]), "bool").dtype == np.bool_
    halves = dtypes.from_integer_fields(np.array([0x3C00, 0xC000]), "float16")  # float16 bits in int32_data
    assert halves.dtype == np.float16 and halves.tolist() == [1.0, -2.0]


def test_unpack_bits_from_one_to_eight_bits_and_refuses_short_data():
    np.testing.assert_array_equal(dtypes.unpack_bits(bytes([0b10110000]), 1, 4), [1, 0, 1, 1])
    np.testing.assert_array_equal(dtypes.unpack_bits(bytes([0x12, 0x34, 0x50]), 4, 5), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(dtypes.unpack_bits(bytes([0xFF, 7]), 8, 2), [255, 7])
    with pytest.raises(CorruptFileError, match="9-bit codes are not supported"):
        dtypes.unpack_bits(bytes(9), 9, 1)
    with pytest.raises(CorruptFileError, match="9 codes of 4 bits need 5 bytes, 4 are stored"):
        dtypes.unpack_bits(bytes(4), 4, 9)
    assert dtypes.unpack_bits(bytes(5), 4, 9).tolist() == [0] * 9  # exactly enough
