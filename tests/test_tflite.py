"""TFLite converter: fixtures made by TensorFlow's converter, read back as its interpreter reads them."""

from __future__ import annotations

import contextlib
import re
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
    with pytest.raises(CorruptFileError, match=f"buffer {tensor.Buffer()} spans bytes"):
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


NNAPI_LAST = (2, [0, 1, 3, 4, 5], [0, 0, 1, 0, 1])


@pytest.mark.parametrize(("levels", "values", "message"), [
    ([(3, [0, 9], [0, 2]), (2, None, None), NNAPI_LAST], 5, "segments are not increasing inside its indices"),
    ([(3, [0, 2], [0, 2]), (2, None, None), (2, [0, 1, 3, 2, 5], [0, 0, 1, 0, 1])], 5,
     "segments are not increasing inside its indices"),  # a segment ending before it starts
    ([(3, [0, 2], [0, 3]), (2, None, None), NNAPI_LAST], 5, r"index outside dimension 0 of \[3, 2, 2\]"),
    ([(3, [0, 2], [0, 2]), (2, None, None), (2, [0, 1, 3, 4], [0, 0, 1, 0])], 5,
     "sparse level has 4 segments for position 3"),  # one segment short
    ([(3, [0, 2], [0, 2]), (2 ** 40, None, None), NNAPI_LAST], 5, "expands to more than its 12 stored entries"),
    ([(3, [0, 2], [0, 2]), (2, None, None), NNAPI_LAST], 4, "lists 5 positions for 4 stored values"),
    ([(3, [0, 2], [0, 2]), (-2, None, None), NNAPI_LAST], 5, "sparsity declares a negative dimension size"),
])
def test_densify_refuses_lying_metadata(levels, values: int, message: str) -> None:
    from filtergrid.converters.tflite import densify

    with pytest.raises(CorruptFileError, match=message):
        densify(np.arange(values, dtype=np.float32), (3, 2, 2), _sparsity([0, 1, 2], [], levels))


@pytest.mark.parametrize(("traversal", "block_map", "n_levels"), [
    ([0, 1], [], 1),        # one level for two dimensions
    ([0, 0], [], 2),        # a dimension traversed twice
    ([0, 1, 3], [1], 3),    # a block dimension that does not exist
    ([0, 1, 2], [2], 3),    # a block of dimension 2 of a matrix
    ([0, 1, 2], [-1], 3),
])
def test_densify_refuses_an_inconsistent_traversal(traversal, block_map, n_levels: int) -> None:
    from filtergrid.converters.tflite import densify

    sparsity = _sparsity(traversal, block_map, [(2, None, None)] * n_levels)
    message = f"sparsity of a [2, 2] tensor has traversal order {traversal}, block map {block_map} and {n_levels} levels"
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        densify(np.zeros(4, np.float32), (2, 2), sparsity)


def test_densify_shows_the_first_16_entries_of_a_long_traversal() -> None:
    from filtergrid.converters.tflite import densify

    with pytest.raises(CorruptFileError) as error:
        densify(np.zeros(4, np.float32), (2, 2), _sparsity(range(20), range(20), [(2, None, None)] * 2))
    assert f"traversal order {list(range(16))}, block map {list(range(16))} and 2 levels" in str(error.value)


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


# -- sparse and quantized weights built with the schema's generated writer (mutation triage) ----
# TensorFlow's converter makes the fixtures above (Uint8 and Uint16 index vectors, 1x4 blocks,
# sparse int8); these build what it writes only for big models (Int32Vector) or never (hostile).

INDEX_VECTORS = {tfl.SparseIndexVector.Int32Vector: ("Int32Vector", "Int32"),
                 tfl.SparseIndexVector.Uint16Vector: ("Uint16Vector", "Uint16"),
                 tfl.SparseIndexVector.Uint8Vector: ("Uint8Vector", "Uint8")}


def _vector(b, start, values, prepend: str) -> int:
    start(b, len(values))
    for v in reversed(list(values)):
        getattr(b, f"Prepend{prepend}")(v)
    return b.EndVector()


def _tables(b, start, tables) -> int:
    start(b, len(tables))
    for t in reversed(tables):
        b.PrependUOffsetTRelative(t)
    return b.EndVector()


def _index_vector(b, kind: int, values) -> int:
    name, prepend = INDEX_VECTORS[kind]
    values = _vector(b, getattr(tfl, f"{name}StartValuesVector"), [int(v) for v in values], prepend)
    getattr(tfl, f"{name}Start")(b)
    getattr(tfl, f"{name}AddValues")(b, values)
    return getattr(tfl, f"{name}End")(b)


def _sparsity_table(b, traversal, block_map, levels, kind: int, kinds: tuple[int, int] | None) -> int:
    """SparsityParameters; a level is (dense size, segments, indices), both None for a DENSE one.
    ``kinds`` overrides the (segments, indices) union types written (a lie about the vectors)."""
    dims = []
    for size, segments, indices in levels:
        sparse = indices is not None
        vectors = [_index_vector(b, kind, v) if v is not None else None for v in (segments, indices)] \
            if sparse else []
        tfl.DimensionMetadataStart(b)
        tfl.DimensionMetadataAddFormat(b, tfl.DimensionType.SPARSE_CSR if sparse else tfl.DimensionType.DENSE)
        tfl.DimensionMetadataAddDenseSize(b, size)
        if sparse:
            seg_kind, idx_kind = kinds or (kind, kind)
            tfl.DimensionMetadataAddArraySegmentsType(b, seg_kind)
            if vectors[0] is not None:
                tfl.DimensionMetadataAddArraySegments(b, vectors[0])
            tfl.DimensionMetadataAddArrayIndicesType(b, idx_kind)
            tfl.DimensionMetadataAddArrayIndices(b, vectors[1])
        dims.append(tfl.DimensionMetadataEnd(b))
    order = _vector(b, tfl.SparsityParametersStartTraversalOrderVector, traversal, "Int32")
    blocks = _vector(b, tfl.SparsityParametersStartBlockMapVector, block_map, "Int32")
    dims_vector = _tables(b, tfl.SparsityParametersStartDimMetadataVector, dims)
    tfl.SparsityParametersStart(b)
    tfl.SparsityParametersAddTraversalOrder(b, order)
    tfl.SparsityParametersAddBlockMap(b, blocks)
    tfl.SparsityParametersAddDimMetadata(b, dims_vector)
    return tfl.SparsityParametersEnd(b)


def _quantization_table(b, scales, zeros, axis: int) -> int:
    scale_vector = _vector(b, tfl.QuantizationParametersStartScaleVector, scales, "Float32")
    zero_vector = None if zeros is None else _vector(b, tfl.QuantizationParametersStartZeroPointVector, zeros, "Int64")
    tfl.QuantizationParametersStart(b)
    tfl.QuantizationParametersAddScale(b, scale_vector)
    if zero_vector is not None:
        tfl.QuantizationParametersAddZeroPoint(b, zero_vector)
    tfl.QuantizationParametersAddQuantizedDimension(b, axis)
    return tfl.QuantizationParametersEnd(b)


def _tensor(b, name: str, shape, ttype: int, buffer: int, quantization=None, sparsity=None) -> int:
    name_at = b.CreateString(name)
    shape_at = _vector(b, tfl.TensorStartShapeVector, shape, "Int32")
    tfl.TensorStart(b)
    tfl.TensorAddShape(b, shape_at)
    tfl.TensorAddType(b, ttype)
    tfl.TensorAddBuffer(b, buffer)
    tfl.TensorAddName(b, name_at)
    if quantization is not None:
        tfl.TensorAddQuantization(b, quantization)
    if sparsity is not None:
        tfl.TensorAddSparsity(b, sparsity)
    return tfl.TensorEnd(b)


def _fc_model(data: bytes, shape: tuple[int, int], *, ttype: int = tfl.TensorType.FLOAT32, sparsity=None,
              kind: int = tfl.SparseIndexVector.Uint8Vector, kinds=None, quant=None, buffer_offset: int = 0) -> bytes:
    """FULLY_CONNECTED over a [1, in] input with ``data`` as its weight "weight" (buffer 1), behind a
    DENSIFY operator when ``sparsity`` = (traversal, block map, levels) is given, as the converter writes
    it. ``quant`` = (scales, zero points or None, axis); ``buffer_offset`` is written in the weight's
    Buffer.offset beside its inline data (0 and 1 mean "not used")."""
    b = flatbuffers.Builder(0)
    sp = _sparsity_table(b, *sparsity, kind, kinds) if sparsity is not None else None
    q = _quantization_table(b, *quant) if quant is not None else None
    tensors = [_tensor(b, "input", (1, shape[1]), tfl.TensorType.FLOAT32, 0),
               _tensor(b, "weight", shape, ttype, 1, q, sp),
               _tensor(b, "dense_weight", shape, ttype, 0, q),
               _tensor(b, "output", (1, shape[0]), tfl.TensorType.FLOAT32, 0)]
    tensors_at = _tables(b, tfl.SubGraphStartTensorsVector, tensors)
    ops = [(0, [1], [2]), (1, [0, 2, -1], [3])] if sparsity is not None else [(1, [0, 1, -1], [3])]
    op_tables = []
    for code, ins, outs in ops:
        ins_at = _vector(b, tfl.OperatorStartInputsVector, ins, "Int32")
        outs_at = _vector(b, tfl.OperatorStartOutputsVector, outs, "Int32")
        tfl.OperatorStart(b)
        tfl.OperatorAddOpcodeIndex(b, code)
        tfl.OperatorAddInputs(b, ins_at)
        tfl.OperatorAddOutputs(b, outs_at)
        op_tables.append(tfl.OperatorEnd(b))
    ops_at = _tables(b, tfl.SubGraphStartOperatorsVector, op_tables)
    inputs_at = _vector(b, tfl.SubGraphStartInputsVector, [0], "Int32")
    outputs_at = _vector(b, tfl.SubGraphStartOutputsVector, [3], "Int32")
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tensors_at)
    tfl.SubGraphAddOperators(b, ops_at)
    tfl.SubGraphAddInputs(b, inputs_at)
    tfl.SubGraphAddOutputs(b, outputs_at)
    graph = tfl.SubGraphEnd(b)
    codes = []
    for builtin in (tfl.BuiltinOperator.DENSIFY, tfl.BuiltinOperator.FULLY_CONNECTED):
        tfl.OperatorCodeStart(b)
        tfl.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
        tfl.OperatorCodeAddBuiltinCode(b, builtin)
        codes.append(tfl.OperatorCodeEnd(b))
    data_at = b.CreateByteVector(data)
    tfl.BufferStart(b)
    empty = tfl.BufferEnd(b)
    tfl.BufferStart(b)
    tfl.BufferAddData(b, data_at)
    if buffer_offset:
        tfl.BufferAddOffset(b, buffer_offset)
    weight_buffer = tfl.BufferEnd(b)
    codes_at = _tables(b, tfl.ModelStartOperatorCodesVector, codes)
    graphs_at = _tables(b, tfl.ModelStartSubgraphsVector, [graph])
    buffers_at = _tables(b, tfl.ModelStartBuffersVector, [empty, weight_buffer])
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, 3)
    tfl.ModelAddOperatorCodes(b, codes_at)
    tfl.ModelAddSubgraphs(b, graphs_at)
    tfl.ModelAddBuffers(b, buffers_at)
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _csr(dense: np.ndarray) -> tuple[np.ndarray, tuple]:
    """A matrix's nonzero values and its (DENSE rows, SPARSE_CSR columns) sparsity, as the converter stores it."""
    rows, cols = np.nonzero(dense)
    segments = np.searchsorted(rows, np.arange(dense.shape[0] + 1))
    return dense[rows, cols], ([0, 1], [], [(dense.shape[0], None, None), (dense.shape[1], segments, cols)])


def _write(tmp_path: Path, model: bytes, name: str = "m.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(model)
    return path


def test_sparse_fixtures_cover_both_index_vector_kinds_the_converter_writes_and_blocks() -> None:
    """The converter's own choices, so the fixtures keep testing what they are named for."""
    def sparsity(name: str):
        model = tfl.Model.GetRootAs((FIXTURES / "tflite" / name).read_bytes(), 0)
        graph = model.Subgraphs(0)
        return next(graph.Tensors(t).Sparsity() for t in range(graph.TensorsLength()) if graph.Tensors(t).Sparsity())

    assert sparsity("dense_sparse_wide.tflite").DimMetadata(1).ArrayIndicesType() == tfl.SparseIndexVector.Uint16Vector
    assert sparsity("dense_sparse.tflite").DimMetadata(1).ArrayIndicesType() == tfl.SparseIndexVector.Uint8Vector
    assert list(sparsity("dense_sparse_blocks.tflite").BlockMapAsNumpy()) == [1]
    with filtergrid.open_model(FIXTURES / "tflite" / "dense_sparse_int8.tflite") as (_, reader):
        info = next(i for i in reader.tensors() if i.candidate)
        assert info.dtype == "int8" and "sparse" in info.role


@pytest.mark.parametrize("kind", list(INDEX_VECTORS), ids=[v[0] for v in INDEX_VECTORS.values()])
def test_every_index_vector_kind_reads_a_matrix_of_mostly_empty_rows(tmp_path: Path, kind: int) -> None:
    """1000 rows, 3 nonzero: the segments vector is most of the file (its entry size bounds the
    count), most rows are empty (a CSR row of no entries is legal); the interpreter's DENSIFY
    reads these models the same."""
    dense = np.zeros((1000, 5), np.float32)
    dense[0, 1], dense[3, 4], dense[3, 0] = 2, -1, 5
    values, sparsity = _csr(dense)
    path = _write(tmp_path, _fc_model(values.tobytes(), dense.shape, sparsity=sparsity, kind=kind))
    assert path.stat().st_size < 1001 * (INDEX_BYTES[kind] + 1)  # 1001 segments of one entry size more: too many
    with filtergrid.open_model(path) as (_, reader):
        np.testing.assert_array_equal(reader.read("weight"), dense)


INDEX_BYTES = {tfl.SparseIndexVector.Int32Vector: 4, tfl.SparseIndexVector.Uint16Vector: 2,
               tfl.SparseIndexVector.Uint8Vector: 1}


# The interpreter's DENSIFY output for these (tf.lite.Interpreter 2.21, values 1..24 in stored order).
BLOCKS_2X3 = [[1, 2, 3, 7, 8, 9], [4, 5, 6, 10, 11, 12], [13, 14, 15, 19, 20, 21], [16, 17, 18, 22, 23, 24]]
BLOCKS_3X2_COLUMN_FIRST = [[1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10, 12], [13, 15, 17, 19, 21, 23],
                           [14, 16, 18, 20, 22, 24]]


@pytest.mark.parametrize(("traversal", "block_sizes", "expected"), [
    ([0, 1, 2, 3], (2, 3), BLOCKS_2X3),
    ([0, 1, 3, 2], (3, 2), BLOCKS_3X2_COLUMN_FIRST),  # the block's columns traversed first
])
def test_two_dimensional_blocks_of_unequal_sides(tmp_path: Path, traversal, block_sizes, expected) -> None:
    levels = [(2, None, None), (2, None, None), *((size, None, None) for size in block_sizes)]
    model = _fc_model(np.arange(1, 25, dtype=np.float32).tobytes(), (4, 6), sparsity=(traversal, [0, 1], levels))
    with filtergrid.open_model(_write(tmp_path, model)) as (_, reader):
        np.testing.assert_array_equal(reader.read("weight"), expected)


def test_segments_that_start_past_the_first_index_skip_it_as_the_interpreter_does(tmp_path: Path) -> None:
    sparsity = ([0, 1], [], [(4, None, None), (6, [1, 2, 3, 3, 5], [9, 0, 2, 1, 5])])
    model = _fc_model(np.arange(1, 5, dtype=np.float32).tobytes(), (4, 6), sparsity=sparsity)
    with filtergrid.open_model(_write(tmp_path, model)) as (_, reader):
        np.testing.assert_array_equal(reader.read("weight"), [[1, 0, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0],
                                                              [0, 0, 0, 0, 0, 0], [0, 3, 0, 0, 0, 4]])


def test_int64_bias_of_a_16x8_model_is_dequantized_per_channel() -> None:
    path = FIXTURES / "tflite" / "conv_int16x8.tflite"
    expected = np.load(path.with_name("conv_int16x8.expected.npz"))
    with filtergrid.open_model(path) as (_, reader):
        bias = next(i for i in reader.tensors() if i.dtype == "int64")
        np.testing.assert_allclose(reader.read(bias.name), expected["bias_stored"], rtol=1e-6)
    assert expected["bias_raw"].dtype == np.int64 and abs(expected["bias_raw"]).max() > 1000


def _int8_fc(tmp_path: Path, quant, shape=(2, 3)) -> Path:
    raw = np.arange(-3, 3, dtype=np.int8).reshape(shape)
    return _write(tmp_path, _fc_model(raw.tobytes(), shape, ttype=tfl.TensorType.INT8, quant=quant))


def test_per_channel_scales_along_the_declared_axis(tmp_path: Path) -> None:
    path = _int8_fc(tmp_path, ([0.5, 0.25, 2.0], [0, 1, 0], 1))
    raw = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    with filtergrid.open_model(path) as (_, reader):
        np.testing.assert_array_equal(reader.read("weight"), (raw - [0, 1, 0]) * [0.5, 0.25, 2.0])


def test_quantized_axis_past_the_rank_is_refused(tmp_path: Path) -> None:
    path = _int8_fc(tmp_path, ([0.5, 0.25], [0, 0], 2))  # two scales: axis 0 would fit, axis 2 does not exist
    with filtergrid.open_model(path) as (_, reader), \
            pytest.raises(CorruptFileError, match="quantized along axis 2 of a rank-2 tensor"):
        reader.read("weight")


@pytest.mark.parametrize("zeros", [None, [0, 0]])
def test_scales_without_one_zero_point_each_are_refused_as_the_interpreter_does(tmp_path: Path, zeros) -> None:
    """TFLite's interpreter refuses such a file ("non-null scale but null zero_point"); filling in
    zeros would show a picture the runtime never computes with."""
    with pytest.raises(CorruptFileError, match=r"tensor 1 is quantized with \d scales but \d zero points"):
        filtergrid.tensors(_int8_fc(tmp_path, ([0.5, 0.25, 2.0], zeros, 1)))


def test_weights_after_the_flatbuffer_need_offset_above_one(tmp_path: Path) -> None:
    """Buffer.offset 0 and 1 mean "not used": the inline data is read; an outside buffer of size 0 is no data."""
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    with filtergrid.open_model(_write(tmp_path, _fc_model(weight.tobytes(), (2, 3), buffer_offset=1))) as (_, reader):
        np.testing.assert_array_equal(reader.read("weight"), weight)
    empty = np.zeros((0, 3, 3, 1), np.float32)
    assert filtergrid.tensors(_write(tmp_path, _model_with_outside_buffer(empty), "empty.tflite")) == []


def test_an_older_tflite_package_without_buffer_offsets_reads_inline_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyproject allows tflite>=2.4, whose Buffer has no Offset (models over 2 GB came later)."""
    monkeypatch.delattr(tfl.Buffer, "Offset")
    bank = filtergrid.load(FIXTURES / "tflite" / "conv_float32.tflite")
    expected = np.load(FIXTURES / "tflite" / "conv_float32.expected.npz")["canonical"]
    np.testing.assert_array_equal(bank.array, expected)


def test_sparse_data_not_a_whole_number_of_elements_is_refused(tmp_path: Path) -> None:
    values, sparsity = _csr(np.eye(3, dtype=np.float32))
    model = _fc_model(values.tobytes()[:-2], (3, 3), sparsity=sparsity)
    with pytest.raises(CorruptFileError, match="sparse tensor 1 holds 10 bytes of float32"):
        filtergrid.load(_write(tmp_path, model))


def _dim_metadata(path: Path, level: int):
    model = tfl.Model.GetRootAs(path.read_bytes(), 0)
    return model.Subgraphs(0).Tensors(1).Sparsity().DimMetadata(level)


def test_lying_index_vectors_are_refused_with_where_they_are(tmp_path: Path) -> None:
    values, sparsity = _csr(np.eye(3, dtype=np.float32))
    unknown = _fc_model(values.tobytes(), (3, 3), sparsity=sparsity, kinds=(7, tfl.SparseIndexVector.Uint8Vector))
    with pytest.raises(CorruptFileError, match="tensor 1 segments 1: sparse index vector of type 7"):
        filtergrid.tensors(_write(tmp_path, unknown))
    no_segments = ([0, 1], [], [(3, None, None), (3, None, [0, 1, 2])])
    missing = _fc_model(values.tobytes(), (3, 3), sparsity=no_segments)
    with pytest.raises(CorruptFileError, match="tensor 1 segments 1: sparse index vector of type 3"):
        filtergrid.tensors(_write(tmp_path, missing))
    path = _write(tmp_path, _fc_model(values.tobytes(), (3, 3), sparsity=sparsity))
    union = _dim_metadata(path, 1).ArrayIndices()
    indices = tfl.Uint8Vector()
    indices.Init(union.Bytes, union.Pos)
    bad = _patch(path, tmp_path / "long.tflite", indices._tab.Vector(indices._tab.Offset(4)) - 4, "<I", 10**6)
    with pytest.raises(CorruptFileError, match="tensor 1 indices 1: 1,000,000 entries cannot fit"):
        filtergrid.tensors(bad)
    dim = _dim_metadata(path, 1)
    field_at = dim._tab.Pos + dim._tab.Offset(14)  # DimensionMetadata field 5, the indices table
    bad = _patch(path, tmp_path / "far.tflite", field_at, "<I", 2**31 - 1)
    with pytest.raises(CorruptFileError, match="tensor 1 indices 1 spans"):
        filtergrid.tensors(bad)


def test_segments_past_empty_indices_are_refused(tmp_path: Path) -> None:
    """An empty index vector (no nonzero entries) is an empty array, not one index."""
    sparsity = ([0, 1], [], [(1, None, None), (3, [0, 1], [])])
    model = _fc_model(np.ones(1, np.float32).tobytes(), (1, 3), sparsity=sparsity)
    with pytest.raises(CorruptFileError, match="segments are not increasing inside its indices"):
        filtergrid.load(_write(tmp_path, model))


def test_lying_quantization_is_refused_with_the_tensor_it_belongs_to(tmp_path: Path) -> None:
    _, tensor = _weight_table(CONV_INT8)
    q = tensor.Quantization()
    scales_at = q._tab.Vector(q._tab.Offset(8)) - 4  # QuantizationParameters field 2, the scales
    bad = _patch(CONV_INT8, tmp_path / "scales.tflite", scales_at, "<I", 10**8)
    with pytest.raises(CorruptFileError, match="tensor 6 scales: 100,000,000 entries cannot fit"):
        filtergrid.tensors(bad)
    field_at = tensor._tab.Pos + tensor._tab.Offset(12)  # Tensor field 4, the quantization table
    bad = _patch(CONV_INT8, tmp_path / "table.tflite", field_at, "<I", 2**31 - 1)
    with pytest.raises(CorruptFileError, match="tensor 6 quantization spans"):
        filtergrid.tensors(bad)
