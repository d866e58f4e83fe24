"""TensorFlow Lite flatbuffers (``.tflite``): the weight of the first conv or dense operator.

Tensors are read with the generated classes of the ``tflite`` package. FlatBuffers' Python runtime
trusts every offset it follows, so each table is checked to lie inside the file before use, every
vector walked is bounded by the file size, and anything else the bytes break becomes a
CorruptFileError. Quantized weights are dequantized with the tensor's own (per-tensor or per-axis)
parameters; float16 weights behind a DEQUANTIZE operator are traced back to their constant.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, plain
from ..safeio import check_extent, map_whole
from .base import Probe, lookup, require

MAGIC = b"TFL3"

#: Operators whose input 1 is a weight, with the layout TFLite stores it in
#: (TRANSPOSE_CONV's inputs are output_shape, weights, input).
WEIGHT_OPS = {"CONV_2D": "OHWI", "DEPTHWISE_CONV_2D": "IHWO", "TRANSPOSE_CONV": "OHWI",
              "FULLY_CONNECTED": "OI"}
#: CONV_3D stores DHWIO, which filtergrid cannot lay out yet: listed, not offered.
UNSHOWN_WEIGHT_OPS = {"CONV_3D": "kernel (kD, kH, kW, in, out) of a CONV_3D operator, a layout not shown yet"}

#: Operators that only decode a constant (float16 -> float32, sparse -> dense) for the next operator.
PASS_THROUGH_OPS = ("DEQUANTIZE", "DENSIFY")

#: Metadata entries looked at for ``min_runtime_version``, and bytes read of a string shown.
_MAX_METADATA = 32
_MAX_TEXT_BYTES = 1024

_MALFORMED = (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError,
              AttributeError)


def sniff(probe: Probe) -> bool:
    return probe.head[4:8] == MAGIC


def open(path: Path) -> TFLiteReader:
    return TFLiteReader(path)


@contextlib.contextmanager
def _flatbuffer_errors() -> Iterator[None]:
    """What the unchecked FlatBuffers runtime raises on bad offsets, as one CorruptFileError."""
    try:
        yield
    except _MALFORMED as e:
        raise CorruptFileError(f"its flatbuffer is malformed: {plain(e)}") from None


@dataclass(frozen=True)
class Sparsity:
    """A sparse tensor's format (schema ``SparsityParameters``): levels in traversal order.

    Each level is ``(dense size, None, None)`` for a DENSE dimension or ``(dense size, segments,
    indices)`` for a SPARSE_CSR one; levels past the tensor's rank are the dimensions of a block.
    """

    traversal: tuple[int, ...]
    block_map: tuple[int, ...]
    levels: tuple[tuple[int, np.ndarray | None, np.ndarray | None], ...]


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Sparsity) -> np.ndarray:
    """The dense tensor, as the interpreter's DENSIFY (``FormatConverter::SparseToDense``) builds it.

    Values are stored in traversal order; each level expands every path so far, DENSE levels over
    ``range(dense size)``, SPARSE_CSR levels over ``indices[segments[p]:segments[p + 1]]``. The
    number of paths is bounded by the values and segments the file stores.
    """
    n, k = len(shape), len(sparsity.block_map)
    _check_sparsity(shape, sparsity)
    budget = values.size + sum(seg.size for _, seg, _ in sparsity.levels if seg is not None)
    paths = np.zeros(1, np.int64)
    columns: list[np.ndarray] = []
    for size, segments, indices in sparsity.levels:
        if segments is None or indices is None:  # a DENSE level has neither
            if paths.size * size > budget:
                raise CorruptFileError(f"sparse tensor expands to more than its {budget:,} stored entries")
            step = np.tile(np.arange(size, dtype=np.int64), paths.size)
            columns = [np.repeat(c, size) for c in columns] + [step]
            paths = np.repeat(paths * size, size) + step
        else:
            paths, column, counts = _csr_level(paths, segments, indices)
            columns = [np.repeat(c, counts) for c in columns] + [column]
    if paths.size != values.size:
        raise CorruptFileError(f"sparse tensor lists {paths.size:,} positions for {values.size:,} stored values")
    index = [columns[sparsity.traversal.index(dim)] for dim in range(n)]  # traversal[:n] permutes range(n)
    for level in range(n, n + k):  # the interpreter's block sizes: block b is level traversal[n + b]'s size
        block = sparsity.traversal[level] - n
        dim = sparsity.block_map[block]
        index[dim] = index[dim] * sparsity.levels[sparsity.traversal[n + block]][0] + columns[level]
    for dim, positions in enumerate(index):
        if positions.size and (positions.min() < 0 or positions.max() >= shape[dim]):
            raise CorruptFileError(f"sparse tensor has an index outside dimension {dim} of {list(shape)}")
    dense = np.zeros(dtypes.check_shape(shape), values.dtype)
    dense[tuple(index)] = values
    return dense


def _check_sparsity(shape: tuple[int, ...], sparsity: Sparsity) -> None:
    n, k = len(shape), len(sparsity.block_map)
    traversal = sparsity.traversal
    # (the two sorted() tests also fix len(traversal) to n + k)
    if (len(sparsity.levels) != n + k or sorted(traversal[:n]) != list(range(n))
            or sorted(traversal[n:]) != list(range(n, n + k)) or any(not 0 <= d < n for d in sparsity.block_map)):
        raise CorruptFileError(f"sparsity of a {list(shape)} tensor has traversal order {list(traversal)[:16]}, "
                               f"block map {list(sparsity.block_map)[:16]} and {len(sparsity.levels)} levels")
    if any(size < 0 for size, _, _ in sparsity.levels):
        raise CorruptFileError("sparsity declares a negative dimension size")


def _csr_level(paths: np.ndarray, segments: np.ndarray, indices: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand each path p over ``indices[segments[p]:segments[p + 1]]``: (new paths, indices, counts)."""
    if paths.size and paths.max() + 1 >= segments.size:
        raise CorruptFileError(f"sparse level has {segments.size:,} segments for position {int(paths.max()):,}")
    starts, ends = segments[paths], segments[paths + 1]
    counts = ends - starts
    if paths.size and (counts.min() < 0 or starts.min() < 0 or ends.max() > indices.size):
        raise CorruptFileError("sparse level segments are not increasing inside its indices")
    total = int(counts.sum())
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    positions = np.arange(total, dtype=np.int64) + offsets
    return positions, indices[positions], counts


@dataclass(frozen=True)
class _Constant:
    """A tensor with stored data: where its bytes are and how to decode them."""

    index: int
    raw_name: bytes
    shape: tuple[int, ...]
    dtype: str
    data: tuple[int, int]  # (offset, length) in the file
    quantization: tuple[np.ndarray, np.ndarray, int] | None  # scales, zero points, quantized axis
    sparsity: Sparsity | None = None


class TFLiteReader:
    """Subgraph 0 of a ``.tflite`` model: its constant tensors, weights of conv/dense operators first."""

    def __init__(self, path: Path):
        self._tfl = require("tflite", "tflite")
        self._map = map_whole(path)
        self._size = len(self._map)
        #: Values per example of each model input (subgraph 0's inputs, batch axis dropped): a dense
        #: first layer over other sizes reads computed features, no image (firstlayer.dense_image).
        self.input_sizes: tuple[int, ...] = ()
        try:
            with _flatbuffer_errors():
                self._constants, self._infos = self._index()
                self._written_by = self._writer()
        except BaseException:
            with contextlib.suppress(BufferError):  # a view still in the traceback pins the map
                self._map.close()
            raise

    # -- reading the flatbuffer -------------------------------------------------------------

    def _table(self, table: Any, what: str) -> Any:
        """``table`` after checking that its position and vtable lie inside the file."""
        tab = table._tab
        check_extent(tab.Pos, 4, self._size, what)
        vtable = tab.Pos - struct.unpack_from("<i", self._map, tab.Pos)[0]
        check_extent(vtable, 4, self._size, f"{what} vtable")
        check_extent(vtable, struct.unpack_from("<H", self._map, vtable)[0], self._size, f"{what} vtable")
        return table

    def _count(self, n: int, what: str, item_bytes: int = 4) -> int:
        """A vector length that the file can hold and the limits allow."""
        if n * item_bytes > self._size:
            raise CorruptFileError(f"{what}: {n:,} entries cannot fit in a file of {self._size:,} bytes")
        limits.check("MAX_TENSORS", n, f"{what} entries")
        return n

    def _distinct(self, parent: Any, slot: int, n: int, what: str) -> None:
        """Refuse a vector of tables whose entries repeat one table: a converter writes each operator and
        tensor once, and a million references to one table would cost a million walks of it."""
        field = parent._tab.Offset(slot)
        if not field or n < 2:
            return
        start = parent._tab.Vector(field)
        check_extent(start, 4 * n, self._size, what)
        relative = np.frombuffer(bytes(self._map[start:start + 4 * n]), "<u4").astype(np.int64)
        repeats = n - np.unique(start + 4 * np.arange(n, dtype=np.int64) + relative).size
        if repeats:
            raise CorruptFileError(f"{what}: {repeats:,} of {n:,} entries repeat a table listed before")

    def _index(self) -> tuple[dict[str, _Constant], list[TensorInfo]]:
        tfl = self._tfl
        if self._size < 8:
            raise CorruptFileError("file too short for a TFLite model")
        model = self._table(tfl.Model.GetRootAs(self._map, 0), "model")
        if not self._count(model.SubgraphsLength(), "subgraphs"):
            return {}, []
        graph = self._table(model.Subgraphs(0), "subgraph 0")
        n_tensors = self._count(graph.TensorsLength(), "tensors")
        self._distinct(graph, 4, n_tensors, "tensors")
        ops = self._operators(model, graph, n_tensors)
        self.input_sizes = self._input_sizes(graph, n_tensors)
        constants = self._constant_tensors(model, graph, n_tensors)
        order, weights, dequantized = _model_order(ops, constants)

        names: dict[str, _Constant] = {}
        infos: list[TensorInfo] = []
        shown = 0
        for t in sorted(constants, key=lambda t: (order[t], t)):
            c = constants[t]
            name = self._name(c, names)
            names[name] = c
            op, k = weights.get(t, ("", -1))
            if op in WEIGHT_OPS:
                why = (f"weight of the first {op} operator (operator {k})" if not shown else
                       f"weight of {op} operator {k} (weight-bearing operator #{shown + 1})")
                shown += 1
                if t in dequantized:
                    why += f" ({c.dtype} behind a DEQUANTIZE operator)" if c.sparsity is None else " (sparse)"
                elif c.sparsity is not None:
                    why += " (sparse, densified as the interpreter does)"
                infos.append(TensorInfo(name, c.shape, c.dtype, WEIGHT_OPS[op], "HWC", why, True))
            else:
                why = UNSHOWN_WEIGHT_OPS.get(op, "not a conv or dense weight (bias, shape or other constant)")
                infos.append(TensorInfo(name, c.shape, c.dtype, "auto", "HWC", why, False))
        return names, infos

    def _writer(self) -> tuple[int, str, str]:
        """Schema version, description and ``min_runtime_version`` metadata: a few bounded reads."""
        model = self._table(self._tfl.Model.GetRootAs(self._map, 0), "model")
        runtime = ""
        n_buffers = model.BuffersLength()
        for i in range(min(model.MetadataLength(), _MAX_METADATA)):
            entry = self._table(model.Metadata(i), f"metadata {i}")
            b = entry.Buffer()
            if self._short_string(entry, 4) == "min_runtime_version" and b < n_buffers:
                extent = self._buffer_extent(self._table(model.Buffers(b), f"buffer {b}"), b)
                runtime = self._text(*extent).rstrip("\0") if extent else ""
        return model.Version(), self._short_string(model, 10), runtime

    def _short_string(self, table: Any, slot: int) -> str:
        """The flatbuffer string in ``slot`` of ``table`` (its first bytes), or "" when absent."""
        tab = table._tab
        field = tab.Offset(slot)
        if not field:
            return ""
        start = tab.Indirect(field + tab.Pos)
        check_extent(start, 4, self._size, "string")
        length = struct.unpack_from("<I", self._map, start)[0]
        check_extent(start + 4, length, self._size, "string")
        return self._text(start + 4, length)

    def _text(self, start: int, length: int) -> str:
        return bytes(self._map[start:start + min(length, _MAX_TEXT_BYTES)]).decode("utf-8", "replace")

    def producer(self) -> Producer | None:
        version, description, runtime = self._written_by
        return Producer.recorded(format_version=f"TFLite schema version {version}",
                                 details=(f'description "{description}"' if description else "",
                                          f"min runtime {runtime}" if runtime else ""))

    def _operators(self, model: Any, graph: Any, n_tensors: int) -> list[tuple[str, list[int], list[int]]]:
        """(operator name, input tensors, output tensors) in execution order."""
        n_codes = self._count(model.OperatorCodesLength(), "operator codes")
        op_names = {v: k for k, v in vars(self._tfl.BuiltinOperator).items() if isinstance(v, int)}
        codes = []
        for j in range(n_codes):
            oc = self._table(model.OperatorCodes(j), f"operator code {j}")
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            codes.append(op_names.get(code, f"builtin {code}"))
        ops = []
        n_ops = self._count(graph.OperatorsLength(), "operators")
        self._distinct(graph, 10, n_ops, "operators")
        for j in range(n_ops):
            op = self._table(graph.Operators(j), f"operator {j}")
            code = op.OpcodeIndex()
            if code >= n_codes:
                raise CorruptFileError(f"operator {j} uses operator code {code} of {n_codes}")
            ins = self._tensor_list(op.InputsAsNumpy() if op.InputsLength() else [], n_tensors, f"operator {j}")
            outs = self._tensor_list(op.OutputsAsNumpy() if op.OutputsLength() else [], n_tensors, f"operator {j}")
            ops.append((codes[code], ins, outs))
        return ops

    def _input_sizes(self, graph: Any, n_tensors: int) -> tuple[int, ...]:
        n_inputs = self._count(graph.InputsLength(), "subgraph inputs")
        inputs = self._tensor_list(graph.InputsAsNumpy() if n_inputs else [], n_tensors, "subgraph inputs")
        sizes = []
        for t in (t for t in inputs if t >= 0):
            tensor = self._table(graph.Tensors(t), f"input tensor {t}")
            dims = self._ints(tensor.ShapeAsNumpy, tensor.ShapeLength(), "input shape")
            per_example = dims[1:] if len(dims) > 1 else dims
            if per_example and min(per_example) > 0:
                sizes.append(math.prod(per_example))
        return tuple(sizes)

    @staticmethod
    def _tensor_list(indices: Any, n_tensors: int, what: str) -> list[int]:
        """Tensor indices of an operator, -1 (an omitted optional input) kept so positions hold."""
        out = [int(t) for t in indices]
        bad = [t for t in out if not -1 <= t < n_tensors]
        if bad:
            raise CorruptFileError(f"{what} refers to tensor {bad[0]} of {n_tensors}")
        return out

    def _constant_tensors(self, model: Any, graph: Any, n_tensors: int) -> dict[int, _Constant]:
        """Tensors whose buffer holds data, with the data's extent and quantization."""
        n_buffers = self._count(model.BuffersLength(), "buffers")
        # TensorType names are the dtypes vocabulary in upper case; the others (INT4, STRING, ...)
        # are listed under their own name and refused by dtypes when read.
        types = {v: k.lower() for k, v in vars(self._tfl.TensorType).items() if isinstance(v, int)}
        constants = {}
        for t in range(n_tensors):
            tensor = self._table(graph.Tensors(t), f"tensor {t}")
            b = tensor.Buffer()
            if b == 0 or tensor.IsVariable():
                continue
            if b >= n_buffers:
                raise CorruptFileError(f"tensor {t} uses buffer {b} of {n_buffers}")
            extent = self._buffer_extent(self._table(model.Buffers(b), f"buffer {b}"), b)
            if extent is None:
                continue
            dtype = types.get(tensor.Type(), f"tensor type {tensor.Type()}")
            rank = self._count(tensor.ShapeLength(), f"tensor {t} shape")
            if rank > 8:
                raise CorruptFileError(f"tensor {t} has rank {rank}")
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if rank else ()
            if any(d < 0 for d in shape):
                raise CorruptFileError(f"tensor {t} has shape {list(shape)}")
            constants[t] = _Constant(t, tensor.Name() or b"", shape, dtype, extent, self._quantization(tensor, t),
                                     self._sparsity(tensor, t))
        return constants

    def _buffer_extent(self, buffer: Any, b: int) -> tuple[int, int] | None:
        """(offset, length) of a buffer's bytes: inside the flatbuffer, or after it in models over 2 GB."""
        offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
        if offset > 1:  # TFLite's rule: 0 and 1 mean "not used"
            size = buffer.Size()
            check_extent(offset, size, self._size, f"buffer {b}")
            return (offset, size) if size else None
        length = buffer.DataLength()
        if not length:
            return None
        start = buffer._tab.Vector(buffer._tab.Offset(4))  # first byte of field 0, the data vector
        check_extent(start, length, self._size, f"buffer {b}")
        return start, length

    def _quantization(self, tensor: Any, t: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        q = tensor.Quantization()
        if q is None:
            return None
        q = self._table(q, f"tensor {t} quantization")
        n = self._count(q.ScaleLength(), f"tensor {t} scales")
        if not n:
            return None
        if self._count(q.ZeroPointLength(), f"tensor {t} zero points", 8) != n:  # the interpreter refuses these too
            raise CorruptFileError(f"tensor {t} is quantized with {n} scales but {q.ZeroPointLength()} zero points")
        # copies (the map must close), float32 and int64 as the schema stores them
        return np.array(q.ScaleAsNumpy()), np.array(q.ZeroPointAsNumpy()), q.QuantizedDimension()

    def _sparsity(self, tensor: Any, t: int) -> Sparsity | None:
        """A sparse tensor's traversal order, block map and per-level metadata (schema ``SparsityParameters``)."""
        sp = tensor.Sparsity()
        if sp is None:
            return None
        sp = self._table(sp, f"tensor {t} sparsity")
        traversal = self._ints(sp.TraversalOrderAsNumpy, sp.TraversalOrderLength(), f"tensor {t} traversal order")
        block_map = self._ints(sp.BlockMapAsNumpy, sp.BlockMapLength(), f"tensor {t} block map")
        levels: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
        for j in range(self._count(sp.DimMetadataLength(), f"tensor {t} dimension metadata")):
            dim = self._table(sp.DimMetadata(j), f"tensor {t} dimension {j}")
            if dim.Format() == self._tfl.DimensionType.DENSE:
                levels.append((dim.DenseSize(), None, None))
            else:
                segments = self._index_vector(dim.ArraySegmentsType(), dim.ArraySegments(), f"tensor {t} segments {j}")
                indices = self._index_vector(dim.ArrayIndicesType(), dim.ArrayIndices(), f"tensor {t} indices {j}")
                levels.append((dim.DenseSize(), segments, indices))
        return Sparsity(traversal, block_map, tuple(levels))

    def _ints(self, as_numpy: Any, n: int, what: str, item_bytes: int = 4) -> tuple[int, ...]:
        return tuple(int(v) for v in as_numpy()) if self._count(n, what, item_bytes) else ()

    def _index_vector(self, kind: int, table: Any, what: str) -> np.ndarray:
        """A SparseIndexVector union member (Int32Vector, Uint16Vector or Uint8Vector) as int64."""
        classes = {1: ("Int32Vector", 4), 2: ("Uint16Vector", 2), 3: ("Uint8Vector", 1)}
        if kind not in classes or table is None:
            raise CorruptFileError(f"{what}: sparse index vector of type {kind}")
        name, size = classes[kind]
        vector = getattr(self._tfl, name)()
        vector.Init(table.Bytes, table.Pos)
        vector = self._table(vector, what)
        if not self._count(vector.ValuesLength(), what, size):
            return np.zeros(0, np.int64)
        return np.asarray(vector.ValuesAsNumpy(), np.int64)

    @staticmethod
    def _name(c: _Constant, taken: dict[str, _Constant]) -> str:
        """The tensor's name, made unique (names are not required to be) and never empty."""
        name = c.raw_name.decode("utf-8", "replace") or f"tensor_{c.index}"
        return name if name not in taken else f"{name}#{c.index}"

    # -- Reader -----------------------------------------------------------------------------

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        c = lookup(self._constants, name)
        with _flatbuffer_errors():
            stored = self._stored(c)
        if c.quantization is None or stored.dtype.kind not in "iu":  # int64 biases of 16x8 models too
            return stored
        scales, zeros, axis = c.quantization
        if scales.size == 1:
            return dtypes.dequantize(stored, scales, zeros)
        if not 0 <= axis < stored.ndim:
            raise CorruptFileError(f"tensor {name!r} is quantized along axis {axis} of a rank-{stored.ndim} tensor")
        return dtypes.dequantize(stored, scales, zeros, axis)

    def _stored(self, c: _Constant) -> np.ndarray:
        """The tensor's elements in its dense shape (a sparse tensor's values densified)."""
        offset, length = c.data
        data = memoryview(self._map)[offset:offset + length]
        if c.sparsity is None:
            return np.array(dtypes.from_buffer(data, c.dtype, c.shape))
        size = dtypes.itemsize(c.dtype)
        if length % size:
            raise CorruptFileError(f"sparse tensor {c.index} holds {length} bytes of {c.dtype}")
        return densify(np.array(dtypes.from_buffer(data, c.dtype, (length // size,))), c.shape, c.sparsity)

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._map.close()


def _model_order(ops: list[tuple[str, list[int], list[int]]], constants: dict[int, Any]
                 ) -> tuple[dict[int, int], dict[int, tuple[str, int]], set[int]]:
    """Where each constant is first used, which are weights (and of which operator), which are dequantized.

    A weight's position is its weight-bearing operator's, so the first weight listed is the first
    layer's. A constant behind DEQUANTIZE (float16) or DENSIFY (sparse) counts as used where its output is.
    """
    behind = {outs[0]: ins[0] for op, ins, outs in ops if op in PASS_THROUGH_OPS and ins and outs}
    dequantized_from = {}
    for out in behind:
        source = out
        for _ in range(len(PASS_THROUGH_OPS)):  # DENSIFY then DEQUANTIZE, at most
            source = behind.get(source, source)
        if source in constants:
            dequantized_from[out] = source
    order: dict[int, int] = {}
    weights: dict[int, tuple[str, int]] = {}
    for k, (op, ins, _) in enumerate(ops):
        if op in PASS_THROUGH_OPS:
            continue
        sources = [dequantized_from.get(t, t) for t in ins]
        for t in sources:
            if t in constants:
                order.setdefault(t, k)
        weight = sources[1] if len(sources) > 1 else -1
        if (op in WEIGHT_OPS or op in UNSHOWN_WEIGHT_OPS) and weight in constants and weight not in weights:
            weights[weight] = (op, k)
            order[weight] = k
    for t in constants:
        order.setdefault(t, len(ops) + t)
    return order, weights, set(dequantized_from.values())
