"""Core ML converter: fixtures written by coremltools, read back as coremltools reads them."""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, assert_one_line_error, entry_id, group_entries

import filtergrid
from filtergrid import converters
from filtergrid.converters.base import Probe
from filtergrid.errors import CorruptFileError, FiltergridError, UnsafeFileError

ENTRIES = group_entries("coreml")
CORE_ML = FIXTURES / "coreml"
PACKAGE = CORE_ML / "program_conv.mlpackage"
BLOB = PACKAGE / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_listing_offers_the_first_layer_first(entry: dict) -> None:
    infos = filtergrid.tensors(FIXTURES / entry["file"])
    first = next(i for i in infos if i.candidate)
    assert (first.name, first.layout) == (entry["first"], entry["layout"])
    assert first.role.startswith("first weight-bearing layer")
    assert len({i.name for i in infos}) == len(infos)
    assert [i.candidate for i in infos].count(True) >= 2  # the head's weight is listed too, after it


def test_quantized_weights_are_decoded_from_their_codes() -> None:
    infos = {i.name: i for i in filtergrid.tensors(CORE_ML / "nn_conv_lut4.mlmodel")}
    assert infos["14.weights"].dtype == "uint4"
    stored = np.load(CORE_ML / "nn_conv_lut4.expected.npz")["stored"]
    assert len(np.unique(stored)) <= 16  # a 4-bit palette: at most 16 distinct values
    program = {i.name: i for i in filtergrid.tensors(CORE_ML / "program_conv_int8.mlpackage")}
    assert program["first_weight_quantized"].dtype == "int8"
    assert "constexpr_affine_dequantize" in program["first_weight_quantized"].role


def test_detected_by_content_not_suffix(tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    shutil.copy(CORE_ML / "nn_dense.mlmodel", renamed)  # its description is longer than the probe
    assert converters.detect(renamed).name == "coreml"
    assert converters.detect(PACKAGE).name == "coreml"
    for onnx in (FIXTURES / "onnx").glob("*.onnx"):
        assert not converters.BY_NAME["coreml"].load_module().sniff(Probe.of(onnx)), onnx


def test_weight_blob_alone_is_recognised_not_sent_to_pytorch(cli) -> None:
    assert converters.detect(BLOB).name == "coreml"
    assert_one_line_error(cli("inspect", BLOB), "Core ML weight blob", "program_conv.mlpackage")


@pytest.mark.parametrize(("stem", "dtype", "ops"), [
    ("program_conv_lut4_ios16", "uint4", ["constexpr_lut_to_dense"]),
    ("program_conv_lut2_grouped", "uint2", ["constexpr_lut_to_dense"]),
    ("program_conv_sparse", "float16", ["constexpr_sparse_to_dense"]),
    ("program_dense_int4_block", "int4", ["constexpr_blockwise_shift_scale"]),
    ("program_conv_sparse_lut", "uint2", ["constexpr_sparse_to_dense", "constexpr_lut_to_sparse"]),
    ("program_conv_sparse_int8", "int8", ["constexpr_sparse_to_dense", "constexpr_sparse_blockwise_shift_scale"]),
])
def test_compressed_program_weights_name_their_codes_and_ops(stem: str, dtype: str, ops: list[str]) -> None:
    first = next(i for i in filtergrid.tensors(CORE_ML / f"{stem}.mlpackage") if i.candidate)
    assert first.dtype == dtype and all(op in first.role for op in ops), first.role


def _first_stored(stem: str) -> np.ndarray:
    path = CORE_ML / f"{stem}.mlpackage"
    with filtergrid.open_model(path) as (_, reader):
        return reader.read(next(i for i in reader.tensors() if i.candidate).name)


def test_grouped_and_vector_tables_apply_along_their_axes() -> None:
    """A table per 2 output channels (at most 4 values in each pair of channels, more overall); a
    vector table fills channel pairs (2k, 2k+1) with one of its 4 vectors."""
    grouped = _first_stored("program_conv_lut2_grouped")
    assert all(len(np.unique(grouped[k:k + 2])) <= 4 for k in (0, 2, 4)) and len(np.unique(grouped)) > 4
    vector = _first_stored("program_conv_lut_vector")
    pairs = {tuple(p) for p in vector.reshape(3, 2, 9).transpose(0, 2, 1).reshape(-1, 2)}
    assert len(pairs) <= 4


def _dims(*sizes: int) -> bytes:
    """Serialized MIL tensor dimensions (Dimension{constant{size}} each), to find and change in a spec."""
    return b"".join(bytes([0x1A, 0x04, 0x0A, 0x02, 0x08, size]) for size in sizes)


@pytest.mark.parametrize(("stem", "old", "new", "needle"), [
    ("program_conv_lut2_grouped", _dims(3, 1, 1, 1, 4, 1), _dims(1, 3, 1, 1, 4, 1), "does not divide"),
    ("program_dense_int4_block", _dims(12, 4), _dims(4, 12), "do not divide"),
    ("program_conv_uint4", _dims(6, 1, 3, 3), _dims(6, 1, 3, 4), "needs 36 bytes, the blob holds 27"),
])
def test_hostile_compressed_weights_give_one_line_errors(tmp_path: Path, cli, stem, old, new, needle) -> None:
    package, spec, _ = _copy_package(tmp_path, CORE_ML / f"{stem}.mlpackage")
    data = spec.read_bytes()
    assert old in data
    spec.write_bytes(data.replace(old, new, 1))  # the first: the stored codes' or table's own type
    with pytest.raises(CorruptFileError, match=needle):
        filtergrid.load(package)
    assert_one_line_error(cli("render", package, "-o", tmp_path / "out.png"), needle)


def test_decompression_op_used_before_it_is_computed_is_refused(tmp_path: Path) -> None:
    """Swapping constexpr_lut_to_sparse and the constexpr_sparse_to_dense that reads its outputs."""
    from filtergrid.converters.coreml import ML_PROGRAM
    from filtergrid.converters.coreml.mlprogram import main_block
    from filtergrid.converters.protomessage import Message

    package, spec, _ = _copy_package(tmp_path, CORE_ML / "program_conv_sparse_lut.mlpackage")
    data = spec.read_bytes()
    program = Message.parse(data, 0, len(data), "model").message(ML_PROGRAM, "program")
    ends = [b for _, _, b in main_block(program).fields[3]]  # op records follow each other
    start, middle, end = ends[0], ends[1], ends[2]
    spec.write_bytes(data[:start] + data[middle:end] + data[start:middle] + data[end:])
    with pytest.raises(CorruptFileError, match="after it"):
        filtergrid.load(package)


def _copy_package(tmp_path: Path, source: Path = PACKAGE) -> tuple[Path, Path, Path]:
    package = tmp_path / "model.mlpackage"
    shutil.copytree(source, package)
    data = package / "Data" / "com.apple.CoreML"
    return package, data / "model.mlmodel", data / "weights" / "weight.bin"


def test_truncated_blob_and_spec_give_one_line_errors(tmp_path: Path, cli) -> None:
    package, spec, blob = _copy_package(tmp_path)
    whole = blob.read_bytes()
    blob.write_bytes(whole[:64 + 64 + 50])  # the first blob (the conv weight) cut short
    assert_one_line_error(cli("render", package, "-o", tmp_path / "out.png"), "weight blob")
    blob.write_bytes(whole)
    data = spec.read_bytes()
    for n in (1, 2, 7, 64, len(data) // 2, len(data) - 1):
        spec.write_bytes(data[:n])
        with pytest.raises(FiltergridError):
            filtergrid.load(package)
    spec.write_bytes(data[:len(data) // 2])
    assert_one_line_error(cli("render", package, "-o", tmp_path / "out.png"))


def test_lying_blob_metadata_is_refused(tmp_path: Path) -> None:
    package, _, blob = _copy_package(tmp_path)
    whole = bytearray(blob.read_bytes())
    struct.pack_into("<Q", whole, 64 + 8, 1 << 40)  # the first blob's size in bytes
    blob.write_bytes(bytes(whole))
    with pytest.raises(CorruptFileError, match="blob data"):
        filtergrid.load(package)
    struct.pack_into("<I", whole, 64, 0x12345678)  # the sentinel
    blob.write_bytes(bytes(whole))
    with pytest.raises(CorruptFileError, match="sentinel"):
        filtergrid.load(package)


def test_lying_layer_size_is_refused_before_reading(tmp_path: Path) -> None:
    data = bytearray((CORE_ML / "nn_conv.mlmodel").read_bytes())
    # outputChannels (ConvolutionLayerParams field 1) of the first conv: 6 -> 126
    at = data.index(bytes([0x08, 6, 0x10, 1]))
    data[at + 1] = 126
    bad = tmp_path / "bad.mlmodel"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="needs"):
        filtergrid.load(bad)


def test_blob_name_outside_the_package_is_refused(tmp_path: Path) -> None:
    package, spec, _ = _copy_package(tmp_path)
    data = spec.read_bytes()
    assert data.count(b"weights/weight.bin") >= 1
    spec.write_bytes(data.replace(b"weights/weight.bin", b"../../../../secret"))
    (tmp_path / "secret").write_bytes(BLOB.read_bytes())
    with pytest.raises(UnsafeFileError, match="outside"):
        filtergrid.load(package)


def test_sniff_of_a_description_longer_than_any_file_says_no(tmp_path: Path) -> None:
    """Found by fuzzing: a Core ML-like start whose description length is 2^63 - 1 made the sniffer
    seek past what an offset can hold (ValueError) instead of saying 'not Core ML'."""
    path = tmp_path / "model.pdparams"
    path.write_bytes(b"\x08\x0b\x12" + b"\xff" * 8 + b"\x7f" + bytes(40))
    assert not converters.BY_NAME["coreml"].load_module().sniff(Probe.of(path))
    with pytest.raises(FiltergridError):
        filtergrid.load(path)


# -- NeuralNetwork WeightParams: each stored type, and quantized weights without what they need ------


@pytest.mark.parametrize(("stem", "dtype"), [
    ("nn_conv", "float32"), ("nn_conv_fp16", "float16"), ("nn_conv_int8", "uint8"), ("nn_conv_lut4", "uint4"),
    ("nn_dense_int8", "int8"),
])
def test_neural_network_weights_list_the_type_they_are_stored_in(stem: str, dtype: str) -> None:
    first = next(i for i in filtergrid.tensors(CORE_ML / f"{stem}.mlmodel") if i.candidate)
    assert first.dtype == dtype


def test_int8_matmul_weights_are_their_codes_times_one_scale() -> None:
    """coremltools' activate_int8_int8_matrix_multiplications stores int8RawValue and one scale, no bias
    (they were listed as uint8 and refused as 'damaged' before)."""
    with filtergrid.open_model(CORE_ML / "nn_dense_int8.mlmodel") as (_, reader):
        stored = reader.read("linear_0.weights")
    expected = np.load(CORE_ML / "nn_dense_int8.expected.npz")["stored"]
    np.testing.assert_array_equal(stored, expected)
    steps = np.unique(np.abs(stored[stored != 0]))
    np.testing.assert_allclose(steps / steps.min(), np.round(steps / steps.min()), atol=1e-4)  # k x one scale


def _first_weight_params(data: bytes):
    """The first layer's WeightParams message in a NeuralNetwork .mlmodel."""
    from filtergrid.converters.coreml import neuralnetwork
    from filtergrid.converters.protomessage import Message

    model = Message.parse(data, 0, len(data), "model")
    network = model.message(500, "network")  # Model.neuralNetwork
    for layer in network.messages(1, "layers"):
        if (conv := layer.message(neuralnetwork.CONVOLUTION, "conv")) is not None:
            return conv.message(90, "weights")
        if (dense := layer.message(neuralnetwork.INNER_PRODUCT, "dense")) is not None:
            return dense.message(20, "weights")
    raise AssertionError("no weight-bearing layer")


def _varint(n: int) -> bytes:
    return bytes([n & 0x7F | 0x80 if n >> 7 else n]) + (_varint(n >> 7) if n >> 7 else b"")


def _renumber(data: bytes, message, old: int, new: int) -> bytes:
    """``data`` with the length-delimited field ``old`` of ``message`` renumbered ``new`` (an unknown field)."""
    a, b = message.span(old)
    key, length = _varint(old << 3 | 2), _varint(b - a)
    start = a - len(key) - len(length)
    assert data[start:a] == key + length and len(_varint(new << 3 | 2)) == len(key)
    return data[:start] + _varint(new << 3 | 2) + data[start + len(key):]


@pytest.mark.parametrize(("stem", "field", "needle"), [
    ("nn_conv_int8", 30, "54 codes of 8 bits need 54 bytes, 0 are stored"),  # rawValue gone
    ("nn_dense_int8", 31, "768 codes of 8 bits need 768 bytes, 0 are stored"),  # int8RawValue gone
])
def test_quantized_weights_without_their_codes_are_refused(tmp_path: Path, stem: str, field: int, needle: str) -> None:
    data = (CORE_ML / f"{stem}.mlmodel").read_bytes()
    bad = tmp_path / "bad.mlmodel"
    bad.write_bytes(_renumber(data, _first_weight_params(data), field, 29))
    with pytest.raises(CorruptFileError, match=needle):
        filtergrid.load(bad)


@pytest.mark.parametrize(("stem", "needle"), [
    ("nn_conv_int8", "quantized weights with neither a linear scale nor a lookup table"),
    ("nn_dense_int8", "int8 weights without their linear scale"),
])
def test_quantized_weights_without_their_scale_are_refused(tmp_path: Path, stem: str, needle: str) -> None:
    data = (CORE_ML / f"{stem}.mlmodel").read_bytes()
    quantization = _first_weight_params(data).message(40, "quantization")
    bad = tmp_path / "bad.mlmodel"
    bad.write_bytes(_renumber(data, quantization, 101, 99))  # linearQuantization -> an unknown field
    with pytest.raises(CorruptFileError, match=needle):
        filtergrid.load(bad)


@pytest.mark.parametrize(("stem", "spot", "at", "needle"), [  # the first layer's outputChannels (spot[at]) one fewer
    ("nn_conv_fp16", bytes([0x08, 6, 0x10, 1]), 1, "14.weights: [5, 1, 3, 3] float16 needs 90 bytes, 108 are stored"),
    ("nn_dense_int8", bytes([0x08, 64, 0x10, 12]), 3, "linear_0.weights: [11, 64] int8 needs 704 bytes, 768 are stored"),
])
def test_weights_of_another_size_are_refused_with_both_sizes(tmp_path: Path, stem: str, spot: bytes, at: int,
                                                             needle: str) -> None:
    data = bytearray((CORE_ML / f"{stem}.mlmodel").read_bytes())
    data[data.index(spot) + at] -= 1
    bad = tmp_path / "bad.mlmodel"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=re.escape(needle)):
        filtergrid.load(bad)


# -- ML Program immediate values, as coremltools serializes each element type ------------------------

VALUES = np.load(CORE_ML / "mil_values.npz")


def _decode_value(case: str) -> np.ndarray:
    from filtergrid.converters.coreml.mlprogram import _tensor
    from filtergrid.converters.protomessage import Message

    data = VALUES[f"{case}.value"].tobytes()
    return _tensor(Message.parse(data, 0, len(data), "value"), f"constant {case!r}").decode(None, f"constant {case!r}")


@pytest.mark.parametrize("case", sorted({k.split(".")[0] for k in VALUES.files if not k.startswith("bad_")}))
def test_immediate_values_decode_to_their_type_as_coremltools_wrote_them(case: str) -> None:
    decoded, expected = _decode_value(case), VALUES[f"{case}.array"]
    assert decoded.dtype == expected.dtype and decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize(("case", "needle"), [
    ("bad_short_float32", "constant 'bad_short_float32': 6 stored units needed, 5 are there"),
    ("bad_short_float64", "constant 'bad_short_float64': 48 stored units needed, 40 are there"),
    ("bad_short_float16", "constant 'bad_short_float16': 12 stored units needed, 10 are there"),
    ("bad_ints_for_float32", "constant 'bad_ints_for_float32': no immediate float32 values"),
    ("bad_no_value", "constant 'bad_no_value': a constant with neither an immediate value nor a blob"),
    ("bad_int16_out_of_range", "constant 'bad_int16_out_of_range': immediate values out of range for int16"),
])
def test_immediate_values_that_do_not_fit_their_type_are_refused(case: str, needle: str) -> None:
    with pytest.raises(CorruptFileError, match=re.escape(needle)):
        _decode_value(case)


@pytest.mark.parametrize(("stem", "where", "needle"), [
    ("nn_conv_int8", (40,), r"unreadable bytes in weights quantization\b"),  # numberOfBits' key
    ("nn_conv_int8", (40, 101), r"unreadable bytes in 14\.weights linear quantization\b"),
    ("nn_conv_lut4", (40, 102), r"unreadable bytes in 14\.weights lookup table\b"),
])
def test_damaged_quantization_parameters_are_named(tmp_path: Path, stem: str, where: tuple[int, ...], needle: str) -> None:
    data = bytearray((CORE_ML / f"{stem}.mlmodel").read_bytes())
    message = _first_weight_params(bytes(data))
    for number in where[:-1]:
        message = message.message(number, "part")
    a, _ = message.span(where[-1])
    data[a] = data[a] | 0x07  # the first key inside the part: wire type 7 does not exist
    bad = tmp_path / "bad.mlmodel"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=needle):
        filtergrid.load(bad)


@pytest.mark.parametrize(("suffix", "needle"), [  # a damaged part appended: protobuf's last occurrence wins
    (b"\x2a\x01\x07", "unreadable bytes in constant 'float32' stored value at byte"),  # blobFileValue
    (b"\x1a\x01\x07", "unreadable bytes in constant 'float32' value at byte"),  # immediateValue
    (b"\x1a\x03\x0a\x01\x07", "unreadable bytes in constant 'float32' tensor at byte"),  # its tensor
    (b"\x1a\x05\x0a\x03\x3a\x01\x07", "unreadable bytes in constant 'float32' at byte"),  # the tensor's bytes
    (b"\x1a\x05\x0a\x03\x0a\x01\x07", "unreadable bytes in constant 'float32' at byte"),  # the tensor's floats
    (b"\x12\x01\x07", "unreadable bytes in constant 'float32' type at byte"),  # the value's type
    (b"\x12\x00", "constant 'float32': not a tensor"),  # a type that is no tensor type
    (b"\x12\x03\x0a\x01\x07", "unreadable bytes in constant 'float32' tensor type at byte"),
    (b"\x12\x04\x0a\x02\x08\x63", "constant 'float32': MIL data type 99 is not supported"),
    (b"\x12\x07\x0a\x05\x08\x0b\x1a\x01\x07", "unreadable bytes in constant 'float32' dimension 0 at byte"),
    (b"\x12\x09\x0a\x07\x08\x0b\x1a\x03\x0a\x01\x07", "unreadable bytes in constant 'float32' dimension at byte"),
    (b"\x12\x08\x0a\x06\x08\x0b\x1a\x02\x12\x00", "constant 'float32': a constant of unknown size"),
])
def test_damaged_parts_of_a_value_are_named(suffix: bytes, needle: str) -> None:
    from filtergrid.converters.coreml.mlprogram import _tensor
    from filtergrid.converters.protomessage import Message

    data = VALUES["float32.value"].tobytes() + suffix
    with pytest.raises(FiltergridError, match=re.escape(needle)):
        _tensor(Message.parse(data, 0, len(data), "value"), "constant 'float32'").decode(None, "constant 'float32'")


def test_a_value_without_a_type_is_not_a_tensor() -> None:
    from filtergrid.converters.coreml.mlprogram import _tensor
    from filtergrid.converters.protomessage import Message

    with pytest.raises(CorruptFileError, match="constant 'x': not a tensor"):
        _tensor(Message.parse(b"", 0, 0, "value"), "constant 'x'")


def _blob_metadata(tmp_path: Path, at: int, value: int, fmt: str = "<I") -> Path:
    package, _, blob = _copy_package(tmp_path)
    whole = bytearray(blob.read_bytes())
    struct.pack_into(fmt, whole, at, value)
    blob.write_bytes(bytes(whole))
    return package


@pytest.mark.parametrize(("at", "value", "needle"), [  # the first blob: the conv weight, float32, metadata at 64
    (64 + 4, 1, r"constant '.*': the program says float32, the blob at byte 64 holds float16"),
    (64 + 4, 99, r"constant '.*': the program says float32, the blob at byte 64 holds blob data type 99"),
])
def test_blob_metadata_of_another_type_is_refused_naming_both(tmp_path: Path, at: int, value: int, needle: str) -> None:
    with pytest.raises(CorruptFileError, match=needle):
        filtergrid.load(_blob_metadata(tmp_path, at, value))


def test_blob_metadata_past_the_end_is_refused_by_name(tmp_path: Path) -> None:
    package, _, blob = _copy_package(tmp_path)
    blob.write_bytes(struct.pack("<II", 0, 2) + bytes(56) + bytes(50))  # no blobs declared; 50 bytes where the first lay
    with pytest.raises(CorruptFileError, match=r"constant '.*': blob metadata"):
        filtergrid.load(package)


def test_a_weight_behind_a_cast_is_read_from_its_stored_constant() -> None:
    first = next(i for i in filtergrid.tensors(CORE_ML / "program_conv_cast.mlpackage") if i.candidate)
    assert (first.name, first.dtype, first.shape) == ("stored_weight", "float32", (2, 1, 3, 3))
    assert first.role.endswith("weight of the conv op 8 (conv_0) (behind a cast)"), first.role
    np.testing.assert_array_equal(_first_stored("program_conv_cast"),
                                  np.load(CORE_ML / "program_conv_cast.expected.npz")["stored"])
