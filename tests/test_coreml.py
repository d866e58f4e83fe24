"""Core ML converter: fixtures written by coremltools, read back as coremltools reads them."""

from __future__ import annotations

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


def _copy_package(tmp_path: Path) -> tuple[Path, Path, Path]:
    package = tmp_path / "model.mlpackage"
    shutil.copytree(PACKAGE, package)
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
