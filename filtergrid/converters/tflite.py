"""TensorFlow Lite flatbuffers (``.tflite``): the weight of the first conv or dense operator.

Tensors are read with the generated classes of the ``tflite`` package. FlatBuffers' Python runtime
trusts every offset it follows, so each table is checked to lie inside the file before use, every
vector walked is bounded by the file size, and anything else the bytes break becomes a
CorruptFileError. Quantized weights are dequantized with the tensor's own (per-tensor or per-axis)
parameters; float16 weights behind a DEQUANTIZE operator are traced back to their constant.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, LimitError
from ..safeio import check_extent, map_readonly
from .base import Probe, lookup, require

MAGIC = b"TFL3"

#: Operators whose input 1 is a weight, with the layout TFLite stores it in
#: (TRANSPOSE_CONV's inputs are output_shape, weights, input).
WEIGHT_OPS = {"CONV_2D": "OHWI", "DEPTHWISE_CONV_2D": "IHWO", "TRANSPOSE_CONV": "OHWI",
              "FULLY_CONNECTED": "OI"}
#: CONV_3D stores DHWIO, which filtergrid cannot lay out yet: listed, not offered.
UNSHOWN_WEIGHT_OPS = {"CONV_3D": "kernel (kD, kH, kW, in, out) of a CONV_3D operator, a layout not shown yet"}

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
        detail = " ".join(str(e).split())[:200] or "no detail"
        raise CorruptFileError(f"malformed TFLite flatbuffer ({type(e).__name__}: {detail})") from None


@dataclass(frozen=True)
class _Constant:
    """A tensor with stored data: where its bytes are and how to decode them."""

    index: int
    raw_name: bytes
    shape: tuple[int, ...]
    dtype: str
    data: tuple[int, int]  # (offset, length) in the file
    quantization: tuple[np.ndarray, np.ndarray, int] | None  # scales, zero points, quantized axis


class TFLiteReader:
    """Subgraph 0 of a ``.tflite`` model: its constant tensors, weights of conv/dense operators first."""

    def __init__(self, path: Path):
        self._tfl = require("tflite", "tflite")
        self._map = map_readonly(path)
        self._size = len(self._map)
        try:
            with _flatbuffer_errors():
                self._constants, self._infos = self._index()
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
        if n > limits.MAX_TENSORS:
            raise LimitError(f"{what}: {n:,} entries, over MAX_TENSORS={limits.MAX_TENSORS:,}")
        return n

    def _index(self) -> tuple[dict[str, _Constant], list[TensorInfo]]:
        tfl = self._tfl
        if self._size < 8:
            raise CorruptFileError("file too short for a TFLite model")
        model = self._table(tfl.Model.GetRootAs(self._map, 0), "model")
        if not self._count(model.SubgraphsLength(), "subgraphs"):
            return {}, []
        graph = self._table(model.Subgraphs(0), "subgraph 0")
        n_tensors = self._count(graph.TensorsLength(), "tensors")
        ops = self._operators(model, graph, n_tensors)
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
                    why += f" ({c.dtype} behind a DEQUANTIZE operator)"
                infos.append(TensorInfo(name, c.shape, c.dtype, WEIGHT_OPS[op], "HWC", why, True))
            else:
                why = UNSHOWN_WEIGHT_OPS.get(op, "not a conv or dense weight (bias, shape or other constant)")
                infos.append(TensorInfo(name, c.shape, c.dtype, "auto", "HWC", why, False))
        return names, infos

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
        for j in range(self._count(graph.OperatorsLength(), "operators")):
            op = self._table(graph.Operators(j), f"operator {j}")
            code = op.OpcodeIndex()
            if code >= n_codes:
                raise CorruptFileError(f"operator {j} uses operator code {code} of {n_codes}")
            ins = self._tensor_list(op.InputsAsNumpy() if op.InputsLength() else [], n_tensors, f"operator {j}")
            outs = self._tensor_list(op.OutputsAsNumpy() if op.OutputsLength() else [], n_tensors, f"operator {j}")
            ops.append((codes[code], ins, outs))
        return ops

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
            constants[t] = _Constant(t, tensor.Name() or b"", shape, dtype, extent, self._quantization(tensor, t))
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
        zeros = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1, np.int64)
        return np.array(q.ScaleAsNumpy(), np.float32), np.array(zeros, np.int64), q.QuantizedDimension()

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
        offset, length = c.data
        with _flatbuffer_errors():
            stored = np.array(dtypes.from_buffer(memoryview(self._map)[offset:offset + length], c.dtype, c.shape))
        if c.quantization is None or c.dtype not in ("int8", "uint8", "int16", "int32"):
            return stored
        scales, zeros, axis = c.quantization
        if scales.size == 1:
            return dtypes.dequantize(stored, scales, zeros)
        if not 0 <= axis < stored.ndim:
            raise CorruptFileError(f"tensor {name!r} is quantized along axis {axis} of a rank-{stored.ndim} tensor")
        return dtypes.dequantize(stored, scales, zeros, axis)

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self._map.close()


def _model_order(ops: list[tuple[str, list[int], list[int]]], constants: dict[int, Any]
                 ) -> tuple[dict[int, int], dict[int, tuple[str, int]], set[int]]:
    """Where each constant is first used, which are weights (and of which operator), which are dequantized.

    A weight's position is its weight-bearing operator's, so the first weight listed is the first
    layer's. A constant behind a DEQUANTIZE operator counts as used where its output is used.
    """
    dequantized_from = {outs[0]: ins[0] for op, ins, outs in ops
                        if op == "DEQUANTIZE" and ins and outs and ins[0] in constants}
    order: dict[int, int] = {}
    weights: dict[int, tuple[str, int]] = {}
    for k, (op, ins, _) in enumerate(ops):
        if op == "DEQUANTIZE":
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
