"""Element-type decoding and dequantization, shared by every converter."""

import warnings

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
    for zero in (0, [4, 8]):  # no rows read (FILTERGRID_MAX_HEATMAP_ROWS=0): empty, not a reshape error
        none = dtypes.dequantize(q[:0], [1.0, 0.5], zero, axis=0, length=2)
        assert none.shape == (0, 2) and none.dtype == np.float32


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


def _codes_by_integer(packed: bytes, nbits: int, count: int, order: str) -> list[int]:
    """Reference codes read off the whole byte string as one integer: ``msb`` is the big-endian
    integer (first code in its top bits), ``lsb`` the little-endian one (first code in its low bits)."""
    mask = (1 << nbits) - 1
    if order == "msb":
        whole, total = int.from_bytes(packed, "big"), len(packed) * 8
        return [(whole >> (total - (k + 1) * nbits)) & mask for k in range(count)]
    whole = int.from_bytes(packed, "little")
    return [(whole >> (k * nbits)) & mask for k in range(count)]


@pytest.mark.parametrize("order", ["msb", "lsb"])
@pytest.mark.parametrize("nbits", range(1, 9))
def test_unpack_bits_agrees_with_the_byte_string_read_as_one_integer(nbits, order):
    packed = np.random.default_rng(nbits).integers(0, 256, 7, dtype=np.uint8).tobytes()
    for count in (7 * 8 // nbits, 7 * 8 // nbits - 1, 1):  # every code that fits, one short of a full last byte, one
        codes = dtypes.unpack_bits(packed, nbits, count, order)
        assert codes.dtype == np.uint8
        assert codes.tolist() == _codes_by_integer(packed, nbits, count, order)


def test_int4_is_twos_complement_like_onnx_int4():
    """ONNX INT4 (and OpenVINO i4): two codes a byte, low nibble first, code c >= 8 stands for c - 16."""
    packed = bytes(range(0, 256, 17)) + bytes([0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE])
    codes = _codes_by_integer(packed, 4, 32, "lsb")
    out = dtypes.unpack(packed, "int4", (4, 8), "lsb")
    assert out.dtype == np.int8 and out.shape == (4, 8)
    assert out.ravel().tolist() == [c - 16 if c >= 8 else c for c in codes]
    assert sorted(set(out.ravel().tolist())) == list(range(-8, 8))


def _openvino_split_codes(packed: bytes, nbits: int, count: int) -> list[int]:
    """OpenVINO u3/u6: each 3-byte group holds 24 / nbits codes; the first two bytes (read as one
    big-endian 16-bit number) hold their low bits, first code highest, the third byte their top bits."""
    per_group = 24 // nbits
    low_bits, high_bits = 16 // per_group, 8 // per_group
    codes = []
    for g in range(0, len(packed) - 2, 3):
        low, high = int.from_bytes(packed[g:g + 2], "big"), packed[g + 2]
        for i in range(per_group):
            low_part = (low >> (16 - (i + 1) * low_bits)) & ((1 << low_bits) - 1)
            high_part = (high >> (8 - (i + 1) * high_bits)) & ((1 << high_bits) - 1)
            codes.append(low_part | high_part << low_bits)
    return codes[:count]


@pytest.mark.parametrize("dtype, nbits", [("uint3", 3), ("uint6", 6)])
def test_split_groups_decode_like_openvino_and_need_whole_groups(dtype, nbits):
    packed = np.random.default_rng(nbits).integers(0, 256, 9, dtype=np.uint8).tobytes()
    count = 9 // 3 * (24 // nbits) - 1  # the last group part-filled
    want = _openvino_split_codes(packed, nbits, count)
    np.testing.assert_array_equal(dtypes.unpack(packed, dtype, (count,), "split"), want)
    np.testing.assert_array_equal(dtypes.unpack(packed + b"\xff\xff", dtype, (count,), "split"), want)  # bytes after: unread
    assert dtypes.packed_nbytes((count,), dtype, "split") == 9
    with pytest.raises(CorruptFileError, match=rf"^{count} codes of {nbits} bits need 9 bytes, 8 are stored$"):
        dtypes.unpack(packed[:8], dtype, (count,), "split")
    with pytest.raises(CorruptFileError, match=r"^4-bit codes in 3-byte groups \(only 3 and 6 bits are\)$"):
        dtypes.unpack(packed, "uint4", (count,), "split")


@pytest.mark.parametrize("order", ["lsb", "msb", "split"])
@pytest.mark.parametrize("dtype", sorted(dtypes.PACKED))
def test_packed_nbytes_is_the_fewest_bytes_unpack_accepts(dtype, order):
    if order == "split" and dtype not in ("uint3", "uint6"):
        return
    for shape in ((1,), (3, 3), (2, 5, 7), (0, 4)):
        need = dtypes.packed_nbytes(shape, dtype, order)
        assert dtypes.unpack(bytes(need), dtype, shape, order).shape == shape
        if need:
            with pytest.raises(CorruptFileError, match="are stored"):
                dtypes.unpack(bytes(need - 1), dtype, shape, order)


def test_lookup_matches_coremltools_documented_iOS18_examples():
    """The two examples of coremltools' iOS18 ``constexpr_lut_to_dense`` docstring, verbatim."""
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1.0, 5.0, 9.0, 13.0, 2.0, 10.0, 18.0, 26.0], np.float16).reshape(2, 1, 4, 1)
    grouped = dtypes.lookup(indices, lut)  # rows 0-2 use the first table, rows 3-5 the second
    assert grouped.dtype == np.float16
    np.testing.assert_array_equal(grouped, [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]])
    a, b = [1, 2, 3], [11, 12, 13]  # the two 3-value centroids a0..a2, b0..b2
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    lut = np.array([a, b], np.int8).reshape(1, 1, 1, 2, 3)
    down_axis_1 = [[[a[k], a[k]] for k in range(3)] + [[b[k], a[k]] for k in range(3)],
                   [[b[k], b[k]] for k in range(3)] + [[a[k], a[k]] for k in range(3)]]
    np.testing.assert_array_equal(dtypes.lookup(indices, lut, vector_axis=1), down_axis_1)
    along_axis_2 = [[a + a, b + a], [b + b, a + a]]
    for axis in (2, -1):
        np.testing.assert_array_equal(dtypes.lookup(indices, lut, vector_axis=axis), along_axis_2)
    first_axis = [[[(a, b)[indices[v, j, k]][i] for k in range(2)] for j in range(2)] for v in range(2) for i in range(3)]
    np.testing.assert_array_equal(dtypes.lookup(indices, lut, vector_axis=-3), first_axis)  # -3: axis 0
    for axis in (None, 3, -4):  # vectors need an axis of the indices
        with pytest.raises(CorruptFileError, match=rf"^vectors of 3 values with vector axis {axis}$"):
            dtypes.lookup(indices, lut, vector_axis=axis)
    with pytest.raises(CorruptFileError, match=r"grid \[1, 0, 1\] does not divide codes of shape \[2, 2, 2\]"):
        dtypes.lookup(indices, np.zeros((1, 0, 1, 2, 3)))
    with pytest.raises(CorruptFileError, match=r"grid \[\] does not divide codes of shape \[2\]"):  # a 2-D table: no grid
        dtypes.lookup(np.array([0, 1]), np.zeros((2, 2)))


def test_blockwise_matches_coremltools_repeat_of_scales_in_the_scale_type():
    """coremltools' ``constexpr_blockwise_shift_scale.decompress``: data cast to the scale's type, scales
    and offsets repeated over their blocks, ``scale * (data - offset)``."""
    rng = np.random.default_rng(5)
    data = rng.integers(-8, 8, (4, 6, 2)).astype(np.int8)
    scale = rng.uniform(0.01, 2, (2, 3, 1)).astype(np.float16)
    offset = rng.integers(-8, 8, (2, 3, 1)).astype(np.int8)

    def repeated(x):
        return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1).repeat(2, axis=2)

    want = repeated(scale) * (data.astype(np.float16) - repeated(offset).astype(np.float16))
    out = dtypes.blockwise(data, scale, offset)
    assert out.dtype == np.float16 and out.shape == data.shape
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(dtypes.blockwise(data, scale), repeated(scale) * data.astype(np.float16))
    with pytest.raises(CorruptFileError, match=r"^block-wise scales of type int8$"):
        dtypes.blockwise(data, offset)
    with pytest.raises(CorruptFileError, match=r"^scales of shape \[2, 3\] do not divide data of shape \[4, 6, 2\]$"):
        dtypes.blockwise(data, scale[..., 0])
    with pytest.raises(CorruptFileError, match=r"^scales of shape \[2, 0, 1\] do not divide"):
        dtypes.blockwise(data, np.zeros((2, 0, 1), np.float32))
    with pytest.raises(CorruptFileError, match=r"^offsets of shape \[2, 3\], scales of shape \[2, 3, 1\]$"):
        dtypes.blockwise(data, scale, offset[..., 0])


def test_sparse_to_dense_fills_the_mask_in_row_major_order_in_the_values_type():
    """Core ML ``constexpr_sparse_to_dense``: the output has ``nonzero_data``'s type; values fill the
    mask's set bits in row-major order."""
    mask = np.random.default_rng(3).integers(0, 2, (3, 4, 5)).astype(np.uint8)
    positions = [p for p in np.ndindex(mask.shape) if mask[p]]
    for values in (np.arange(1, len(positions) + 1, dtype=np.int8), np.linspace(-1, 1, len(positions), dtype=np.float16)):
        want = np.zeros(mask.shape, values.dtype)
        for p, v in zip(positions, values):
            want[p] = v
        out = dtypes.sparse_to_dense(values, mask)
        assert out.dtype == values.dtype
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(dtypes.sparse_to_dense(values.reshape(-1, 1), mask), want)  # any shape, in order


@pytest.mark.parametrize("code, order, want", [("f4", ">", ">f4"), ("f4", "<", "<f4"), ("i8", "=", "=i8"),
                                               ("u1", "|", "u1"), ("f2", ">", ">f2")])
def test_pickled_dtype_applies_the_recorded_byte_order(code, order, want):
    dt = dtypes.pickled_dtype(code, order)
    assert dt.str == np.dtype(want).str  # kind, size and byte order


def test_to_float32_takes_any_numpy_number_refuses_the_rest_and_overflows_to_inf_silently():
    np.testing.assert_array_equal(dtypes.to_float32(np.array([1.5, -2.0], np.longdouble)), [1.5, -2.0])  # no filtergrid name
    for value, name in ((np.array([1 + 2j]), "complex128"), (np.array(["1.5"]), "str96")):
        with pytest.raises(CorruptFileError, match=rf"^unsupported element type '{name}'$"):
            dtypes.to_float32(value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the user's terminal
        np.testing.assert_array_equal(dtypes.to_float32(np.array([1e300, -1e300])), [np.inf, -np.inf])
