"""The OpenVINO decompression ops filtergrid evaluates on constants (``Convert``, ``Reshape``,
``Gather``, ``Subtract``/``Multiply``/``Add``), checked op by op against the opset's definitions
(docs.openvino.ai, opset13) with inputs the NNCF fixtures in ``openvino/`` do not reach."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from filtergrid.converters.openvino import _apply, _Layer
from filtergrid.errors import CorruptFileError, LimitError


def layer(kind: str, **data: str) -> _Layer:
    return _Layer("7", f"a {kind}", kind, dict(data), [], 0, ())


def test_reshape_special_zero_keeps_the_input_dimension_only_when_the_attribute_says_true():
    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    target = np.array([0, -1], np.int64)
    assert _apply(layer("Reshape", special_zero="true"), [value, target]).shape == (2, 12)
    with pytest.raises(CorruptFileError):  # without special_zero, 0 is a dimension of size 0
        _apply(layer("Reshape", special_zero="false"), [value, target])
    with pytest.raises(CorruptFileError):  # the attribute's default is false
        _apply(layer("Reshape"), [value, target])


def test_gather_looks_codes_up_in_a_one_dimensional_codebook_with_or_without_batch_dims_written():
    codebook = np.array([-1.5, -0.25, 0.0, 0.75], np.float32)
    codes = np.array([[3, 0], [2, 1]], np.uint8)
    expected = np.array([[0.75, -1.5], [0.0, -0.25]], np.float32)
    for gather in (layer("Gather", batch_dims="0"), layer("Gather")):
        for axis in (0, -1):
            np.testing.assert_array_equal(_apply(gather, [codebook, codes, np.array(axis, np.int64)]), expected)


@pytest.mark.parametrize("data, axis, batch_dims", [
    (np.zeros((4, 2), np.float32), np.array(0), "0"),  # a 2-D table
    (np.zeros(4, np.float32), np.array([0, 0]), "0"),  # two axes
    (np.zeros(4, np.float32), np.array(1), "0"),       # an axis a 1-D table does not have
    (np.zeros(4, np.float32), np.array(-2), "0"),
    (np.zeros(4, np.float32), np.array(0), "1"),       # batched gather
])
def test_gather_refuses_anything_but_a_one_dimensional_codebook(data, axis, batch_dims):
    with pytest.raises(CorruptFileError, match=r"a weight gathered from a \[.*\] table along axis .*only 1-D codebooks"):
        _apply(layer("Gather", batch_dims=batch_dims), [data, np.zeros(3, np.uint8), axis])


def test_convert_needs_one_input_and_its_destination_type():
    codes = np.array([1, 2, 250], np.uint8)
    np.testing.assert_array_equal(_apply(layer("Convert", destination_type="f16"), [codes]), codes.astype(np.float32))
    with pytest.raises(CorruptFileError, match="converted from uint8 to ''"):
        _apply(layer("Convert"), [codes])
    with pytest.raises(CorruptFileError, match="cannot evaluate a Convert layer with 2 inputs"):
        _apply(layer("Convert", destination_type="f16"), [codes, codes])


@pytest.mark.parametrize("kind, args", [("Sqrt", 1), ("Divide", 2), ("Concat", 3), ("Multiply", 1), ("Gather", 2)])
def test_an_op_filtergrid_does_not_evaluate_is_refused_by_name_and_input_count(kind, args):
    with pytest.raises(CorruptFileError, match=f"cannot evaluate a {kind} layer with {args} inputs"):
        _apply(layer(kind), [np.ones(2, np.float32)] * args)


def test_arithmetic_broadcasts_within_the_element_limit_and_quietly():
    scale = np.array([[0.5], [2.0]], np.float32)
    codes = np.array([[1.0, -3.0, 3e38]], np.float32)  # 3e38 * 2 overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow to inf is the model's value, not a warning on the terminal
        got = _apply(layer("Multiply"), [codes, scale])
    np.testing.assert_array_equal(got, np.array([[0.5, -1.5, 3e38 / 2], [2.0, -6.0, np.inf]], np.float32))
    np.testing.assert_array_equal(_apply(layer("Subtract"), [codes[:, :2], scale]), [[0.5, -3.5], [-1.0, -5.0]])
    with pytest.raises(LimitError, match="MAX_TENSOR_BYTES"):  # (1e6, 1) x (1, 1e6) would be 10^12 values
        _apply(layer("Add"), [np.zeros((10**6, 1), np.float32), np.zeros((1, 10**6), np.float32)])


def test_convert_to_any_float_type_rounds_to_it_but_stays_float32_and_quiet():
    wide = np.array([1 / 3, 1e5, -2.5], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1e5 overflows float16: inf, as the CPU plugin computes it
        half = _apply(layer("Convert", destination_type="f16"), [wide])
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half, np.array([np.float16(1 / 3), np.inf, -2.5], np.float32))
    double = _apply(layer("Convert", destination_type="f64"), [np.array([3, 250], np.uint8)])
    assert double.dtype == np.float32 and double.tolist() == [3.0, 250.0]


def test_convert_to_an_integer_type_only_when_no_value_changes():
    np.testing.assert_array_equal(_apply(layer("Convert", destination_type="i32"), [np.array([0, 15], np.uint8)]), [0, 15])
    with pytest.raises(CorruptFileError, match="converted from uint16 to uint8"):
        _apply(layer("Convert", destination_type="u8"), [np.array([1, 300], np.uint16)])
    with pytest.raises(CorruptFileError, match="converted from float32 to int8"):  # floats are not codebook indices
        _apply(layer("Convert", destination_type="i8"), [np.array([1.0, 2.0], np.float32)])
    with pytest.raises(CorruptFileError, match="converted from uint8 to 'q9'"):
        _apply(layer("Convert", destination_type="q9"), [np.array([1], np.uint8)])


@pytest.mark.parametrize("codes", [np.array([0, -1], np.int8), np.array([0.0, 1.0], np.float32)])
def test_gather_refuses_negative_or_non_integer_indices(codes):
    with pytest.raises(CorruptFileError, match="a codebook gathered with negative or non-integer indices"):
        _apply(layer("Gather"), [np.zeros(4, np.float32), codes, np.array(0)])
