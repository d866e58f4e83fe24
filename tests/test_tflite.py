"""TFLite converter: fixtures made by TensorFlow's converter, read back as its interpreter reads them."""

from __future__ import annotations

import contextlib
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, entry_id, group_entries

import filtergrid
from filtergrid import converters
from filtergrid.errors import CorruptFileError, FiltergridError, MissingExtraError

tfl = pytest.importorskip("tflite")
flatbuffers = pytest.importorskip("flatbuffers")

ENTRIES = group_entries("tflite")
CONV_INT8 = FIXTURES / "tflite" / "conv_int8.tflite"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_id)
def test_listing_offers_the_first_weight_first(entry: dict) -> None:
    infos = filtergrid.tensors(FIXTURES / entry["file"], format="tflite")
    first = next(i for i in infos if i.candidate)
    assert (first.name, first.layout) == (entry["first"], entry["layout"])
    assert "first" in first.role
    assert len({i.name for i in infos}) == len(infos)


def test_int8_weights_are_dequantized_per_channel() -> None:
    expected = np.load(FIXTURES / "tflite" / "conv_int8.expected.npz")
    info = next(i for i in filtergrid.tensors(CONV_INT8, format="tflite") if i.candidate)
    assert info.dtype == "int8"
    assert expected["raw"].dtype == np.int8
    # Per-axis: the dequantized values differ from one rounding of a single scale.
    ratios = expected["stored"].reshape(4, -1).max(axis=1) / np.maximum(expected["raw"].reshape(4, -1).max(axis=1), 1)
    assert len(set(np.round(ratios, 9))) > 1


def test_float16_weight_is_traced_through_dequantize() -> None:
    info = next(i for i in filtergrid.tensors(FIXTURES / "tflite" / "conv_float16.tflite", format="tflite")
                if i.candidate)
    assert info.dtype == "float16" and "DEQUANTIZE" in info.role


def test_sniffed_by_magic_not_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(CONV_INT8.read_bytes())
    monkeypatch.setattr(converters, "FORMATS", (converters.BY_NAME["tflite"],))
    assert converters.detect(renamed).name == "tflite"


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tflite", None)
    with pytest.raises(MissingExtraError, match=r"filtergrid\[tflite\]"):
        filtergrid.load(CONV_INT8, format="tflite")


# -- hostile files: every mutation ends in a FiltergridError or a clean read, nothing else ------


def _survives(path: Path) -> None:
    with contextlib.suppress(FiltergridError):
        filtergrid.load(path, format="tflite")


def test_truncated_files_are_refused(tmp_path: Path) -> None:
    data = CONV_INT8.read_bytes()
    cut = tmp_path / "cut.tflite"
    for n in sorted({*range(24), *range(24, len(data), 37)}):
        cut.write_bytes(data[:n])
        with pytest.raises(FiltergridError):
            filtergrid.load(cut, format="tflite")


@pytest.mark.parametrize("word", [0xFFFFFFFF, 0x7FFFFFF0, 0x00010001])
def test_every_overwritten_word_is_handled(tmp_path: Path, word: int) -> None:
    data = CONV_INT8.read_bytes()
    bad = tmp_path / "bad.tflite"
    for pos in range(0, len(data) - 4, 4):
        bad.write_bytes(data[:pos] + struct.pack("<I", word) + data[pos + 4:])
        _survives(bad)


def _weight_table(path: Path):
    """The generated accessor of the int8 model's conv weight tensor (to find bytes to lie in)."""
    model = tfl.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    op = graph.Operators(0)
    return model, graph.Tensors(int(op.Inputs(1)))


def _patch(path: Path, out: Path, pos: int, fmt: str, value: int) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, pos, value)
    out.write_bytes(bytes(data))
    return out


def test_lying_dimension_is_refused_before_allocating(tmp_path: Path) -> None:
    _, tensor = _weight_table(CONV_INT8)
    shape_at = tensor._tab.Vector(tensor._tab.Offset(4))
    bad = _patch(CONV_INT8, tmp_path / "dim.tflite", shape_at, "<i", 1_000_000)
    with pytest.raises(CorruptFileError, match="declares"):
        filtergrid.load(bad, format="tflite")


def test_lying_buffer_length_is_refused(tmp_path: Path) -> None:
    model, tensor = _weight_table(CONV_INT8)
    buffer = model.Buffers(tensor.Buffer())
    length_at = buffer._tab.Vector(buffer._tab.Offset(4)) - 4
    bad = _patch(CONV_INT8, tmp_path / "len.tflite", length_at, "<I", 0x7FFFFFFF)
    with pytest.raises(CorruptFileError, match="buffer"):
        filtergrid.load(bad, format="tflite")


def test_lying_tensor_count_is_refused(tmp_path: Path) -> None:
    model, _ = _weight_table(CONV_INT8)
    graph = model.Subgraphs(0)
    count_at = graph._tab.Vector(graph._tab.Offset(4)) - 4
    bad = _patch(CONV_INT8, tmp_path / "count.tflite", count_at, "<I", 0x40000000)
    with pytest.raises(CorruptFileError, match="tensors"):
        filtergrid.load(bad, format="tflite")


def test_undecodable_element_type_is_listed_then_refused_on_read(tmp_path: Path) -> None:
    _, tensor = _weight_table(CONV_INT8)
    type_at = tensor._tab.Pos + tensor._tab.Offset(6)  # Tensor field 1, the element type
    bad = _patch(CONV_INT8, tmp_path / "int4.tflite", type_at, "<b", tfl.TensorType.INT4)
    first = next(i for i in filtergrid.tensors(bad, format="tflite") if i.candidate)
    assert first.dtype == "int4"
    with pytest.raises(CorruptFileError, match="int4"):
        filtergrid.load(bad, format="tflite")


# -- models over 2 GB keep buffers after the flatbuffer (Buffer.offset/size) ------------------


def _model_with_outside_buffer(weight: np.ndarray, offset: int | None = None) -> bytes:
    """A one-CONV_2D model built with the schema's generated writer, its weight after the flatbuffer."""

    def build(data_offset: int) -> bytes:
        b = flatbuffers.Builder(0)
        name = b.CreateString("conv/weight")
        tfl.TensorStartShapeVector(b, weight.ndim)
        for d in reversed(weight.shape):
            b.PrependInt32(d)
        shape = b.EndVector()
        tfl.TensorStart(b)
        tfl.TensorAddShape(b, shape)
        tfl.TensorAddBuffer(b, 1)
        tfl.TensorAddName(b, name)
        tensor = tfl.TensorEnd(b)
        tfl.TensorStart(b)
        image = tfl.TensorEnd(b)
        tfl.SubGraphStartTensorsVector(b, 2)
        b.PrependUOffsetTRelative(tensor)
        b.PrependUOffsetTRelative(image)
        tensors = b.EndVector()
        tfl.OperatorStartInputsVector(b, 2)
        b.PrependInt32(1)
        b.PrependInt32(0)
        inputs = b.EndVector()
        tfl.OperatorStart(b)
        tfl.OperatorAddInputs(b, inputs)
        op = tfl.OperatorEnd(b)
        tfl.SubGraphStartOperatorsVector(b, 1)
        b.PrependUOffsetTRelative(op)
        ops = b.EndVector()
        tfl.SubGraphStart(b)
        tfl.SubGraphAddTensors(b, tensors)
        tfl.SubGraphAddOperators(b, ops)
        graph = tfl.SubGraphEnd(b)
        tfl.OperatorCodeStart(b)
        tfl.OperatorCodeAddDeprecatedBuiltinCode(b, tfl.BuiltinOperator.CONV_2D)
        tfl.OperatorCodeAddBuiltinCode(b, tfl.BuiltinOperator.CONV_2D)
        code = tfl.OperatorCodeEnd(b)
        tfl.BufferStart(b)
        empty = tfl.BufferEnd(b)
        tfl.BufferStart(b)
        tfl.BufferAddOffset(b, data_offset)
        tfl.BufferAddSize(b, weight.nbytes)
        outside = tfl.BufferEnd(b)
        vectors = []
        for start, items in ((tfl.ModelStartOperatorCodesVector, [code]), (tfl.ModelStartSubgraphsVector, [graph]),
                             (tfl.ModelStartBuffersVector, [outside, empty])):
            start(b, len(items))
            for item in items:
                b.PrependUOffsetTRelative(item)
            vectors.append(b.EndVector())
        tfl.ModelStart(b)
        tfl.ModelAddVersion(b, 3)
        tfl.ModelAddOperatorCodes(b, vectors[0])
        tfl.ModelAddSubgraphs(b, vectors[1])
        tfl.ModelAddBuffers(b, vectors[2])
        b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    head = build(2)
    start = -(-len(head) // 16) * 16
    head = build(start if offset is None else offset)
    return head.ljust(start, b"\0") + weight.tobytes()


def test_buffer_stored_after_the_flatbuffer(tmp_path: Path) -> None:
    weight = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    path = tmp_path / "big.tflite"
    path.write_bytes(_model_with_outside_buffer(weight))
    bank = filtergrid.load(path, format="tflite")
    assert bank.provenance.tensor == "conv/weight"
    np.testing.assert_array_equal(bank.array, weight)


def test_buffer_offset_past_the_end_is_refused(tmp_path: Path) -> None:
    weight = np.ones((2, 3, 3, 1), np.float32)
    path = tmp_path / "big.tflite"
    path.write_bytes(_model_with_outside_buffer(weight, offset=2**40))
    with pytest.raises(CorruptFileError, match="buffer 1 spans"):
        filtergrid.load(path, format="tflite")
