"""TFLite converter: fixtures made by TensorFlow's converter, read back as its interpreter reads them."""

from __future__ import annotations

import contextlib
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, entry_id, group_entries

import filtergrid
from filtergrid import converters, limits
from filtergrid.errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    MissingExtraError,
    TensorNotFoundError,
)

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


# -- sparse tensors (DENSIFY), asymmetric uint8, bounded operator vectors (issues 10 and 12) ----


def test_sparse_weight_is_densified_like_the_interpreter() -> None:
    info = next(i for i in filtergrid.tensors(FIXTURES / "tflite" / "dense_sparse.tflite") if i.candidate)
    assert info.shape == (16, 64) and "sparse" in info.role
    expected = np.load(FIXTURES / "tflite" / "dense_sparse.expected.npz")["stored"]
    assert 0.7 < np.mean(expected == 0) < 0.9  # the pruned kernel really is sparse


def _sparsity(traversal, block_map, levels):
    from filtergrid.converters.tflite import Sparsity

    return Sparsity(tuple(traversal), tuple(block_map),
                    tuple((size, None if seg is None else np.array(seg), None if idx is None else np.array(idx))
                          for size, seg, idx in levels))


def test_densify_csr_levels() -> None:
    """A (3, 2, 2) tensor, levels SPARSE_CSR, DENSE, SPARSE_CSR (Android NNAPI's densify_4 example)."""
    from filtergrid.converters.tflite import densify

    sparsity = _sparsity([0, 1, 2], [], [(3, [0, 2], [0, 2]), (2, None, None), (2, [0, 1, 3, 4, 5], [0, 0, 1, 0, 1])])
    dense = densify(np.array([6.0, 9.0, 8.0, 5.0, 7.0], np.float32), (3, 2, 2), sparsity)
    np.testing.assert_array_equal(dense.ravel(), [6, 0, 9, 8, 0, 0, 0, 0, 5, 0, 0, 7])


def test_densify_blocks() -> None:
    """A (4, 4) tensor stored as 2x2 blocks of 2x2 (NNAPI's densify_2 example): the block map matters."""
    from filtergrid.converters.tflite import densify

    sparsity = _sparsity([0, 1, 2, 3], [0, 1], [(2, None, None)] * 4)
    values = np.array([1, 0, 0, 4, 2, 3, 0, 0, 0, 0, 0, 0, 5, 0, 0, 6], np.float32)
    dense = densify(values, (4, 4), sparsity)
    np.testing.assert_array_equal(dense.ravel(), [1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 5, 0, 0, 0, 0, 6])


@pytest.mark.parametrize("levels", [
    [(3, [0, 9], [0, 2]), (2, None, None), (2, [0, 1, 3, 4, 5], [0, 0, 1, 0, 1])],  # segment past the indices
    [(3, [0, 2], [0, 7]), (2, None, None), (2, [0, 1, 3, 4, 5], [0, 0, 1, 0, 1])],  # index 7 of 3
    [(3, [0, 2], [0, 2]), (2, None, None), (2, [0, 1], [0])],  # fewer segments than positions
    [(3, [0, 2], [0, 2]), (2 ** 40, None, None), (2, [0, 1, 3, 4, 5], [0, 0, 1, 0, 1])],  # a dense level of 2^40
])
def test_densify_refuses_lying_metadata(levels) -> None:
    from filtergrid.converters.tflite import densify

    with pytest.raises(CorruptFileError):
        densify(np.arange(5, dtype=np.float32), (3, 2, 2), _sparsity([0, 1, 2], [], levels))


def test_asymmetric_uint8_weights_use_their_zero_points() -> None:
    path = FIXTURES / "tflite" / "conv_uint8_asymmetric.tflite"
    expected = np.load(path.with_name("conv_uint8_asymmetric.expected.npz"))
    assert expected["raw"].dtype == np.uint8
    with filtergrid.open_model(path) as (_, reader):
        info = next(i for i in reader.tensors() if i.candidate)
        values = reader.read(info.name)
    np.testing.assert_array_equal(values, expected["stored"])
    assert values.min() < 0 < values.max()  # raw uint8 times a scale would all be >= 0


def test_unknown_tensor_name_is_tensor_not_found() -> None:
    with filtergrid.open_model(CONV_INT8) as (_, reader), pytest.raises(TensorNotFoundError):
        reader.read("no such tensor")


def test_tensor_count_over_the_limit_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TENSORS", 3)
    with pytest.raises(LimitError, match="MAX_TENSORS"):
        filtergrid.load(CONV_INT8)


def _shared_operator_model(n: int) -> bytes:
    """A flatbuffer whose subgraph lists one operator table ``n`` times (an amplification attack)."""
    b = flatbuffers.Builder(0)
    tfl.OperatorStart(b)
    op = tfl.OperatorEnd(b)
    tfl.SubGraphStartOperatorsVector(b, n)
    for _ in range(n):
        b.PrependUOffsetTRelative(op)
    ops = b.EndVector()
    tfl.SubGraphStart(b)
    tfl.SubGraphAddOperators(b, ops)
    graph = tfl.SubGraphEnd(b)
    tfl.OperatorCodeStart(b)
    tfl.OperatorCodeAddBuiltinCode(b, tfl.BuiltinOperator.CONV_2D)
    code = tfl.OperatorCodeEnd(b)
    vectors = []
    for start, item in ((tfl.ModelStartOperatorCodesVector, code), (tfl.ModelStartSubgraphsVector, graph)):
        start(b, 1)
        b.PrependUOffsetTRelative(item)
        vectors.append(b.EndVector())
    tfl.ModelStart(b)
    tfl.ModelAddOperatorCodes(b, vectors[0])
    tfl.ModelAddSubgraphs(b, vectors[1])
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_operator_vector_repeating_one_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shared.tflite"
    path.write_bytes(_shared_operator_model(200_000))
    start = time.monotonic()
    with pytest.raises(CorruptFileError, match="repeat a table"):
        filtergrid.load(path)
    assert time.monotonic() - start < 5
