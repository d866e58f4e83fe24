"""One tensor's values: from raw_data, the typed value fields, external data or a sparse tensor.

Sizes are checked before anything is allocated: raw_data and external data must hold exactly
dims x dtype bytes, typed fields their count of values, and a sparse tensor's dense size must stay
under ``MAX_TENSOR_BYTES`` and ``MAX_SPARSE_EXPANSION`` times the model file's size. Element types
and dequantization go through :mod:`filtergrid.dtypes`.
"""

from __future__ import annotations

import math

import numpy as np

from ... import dtypes, limits
from ...errors import CorruptFileError, UnreadableFeatureError
from ...safeio import ModelPath, array_at
from ..protowire import I32, I64, LEN, VARINT, packed_varints, signed
from .external import read_external
from .model import ONNX_DTYPES, StoredTensor, type_name
from .ops import Quantization

# TensorProto fields holding values without raw_data, by element type: float_data (4),
# int32_data (5, every type of 32 bits or less), int64_data (7), double_data (10), uint64_data (11).
_FIELD_OF = {"float32": 4, "float64": 10, "int64": 7, "uint32": 11, "uint64": 11}
_INT32_DATA = 5
#: Their names, as onnx.proto gives them (what an error names: "field 5" would mean nothing to a user).
_FIELD_NAMES = {4: "float_data", 5: "int32_data", 7: "int64_data", 10: "double_data", 11: "uint64_data"}
#: Fields of fixed-size little-endian floats.
_FIXED_DTYPE: dict[int, np.dtype] = {4: np.dtype("<f4"), 10: np.dtype("<f8")}
#: Bytes a varint takes at most: a typed field longer than this per value is refused unread.
_VARINT_BYTES = 10


class Decoder:
    """Decodes tensors of one mapped model file (external data from its folder)."""

    def __init__(self, buf, folder: ModelPath) -> None:
        self.buf = buf
        self.folder = folder

    def decode(self, t: StoredTensor, rows: int | None = None) -> np.ndarray:
        """The stored values (bit-pattern types as float32), only the first ``rows`` when asked."""
        dtype = ONNX_DTYPES.get(t.data_type)
        if dtype is None:
            raise UnreadableFeatureError(f"tensor {t.name!r} has element type {type_name(t.data_type)}, which filtergrid "
                                   "cannot decode")
        if any(d < 0 for d in t.dims):
            raise CorruptFileError(f"tensor {t.name!r} has negative dims {list(t.dims)}")
        if t.sparse is not None:
            return self._densify(t)
        shape = t.dims if rows is None or not t.dims or rows >= t.dims[0] else (rows, *t.dims[1:])
        dtypes.check_shape(shape)
        stored = self._stored(t, dtype, math.prod(t.dims), math.prod(shape))
        return dtypes.native(stored.reshape(shape), dtype)

    def _stored(self, t: StoredTensor, dtype: str, count: int, wanted: int) -> np.ndarray:
        """The first ``wanted`` of the tensor's ``count`` elements, in their storage dtype."""
        itemsize = dtypes.itemsize(dtype)
        if t.external is not None:
            data = read_external(self.folder, t, count * itemsize, wanted * itemsize)
            return np.frombuffer(data, dtypes.STORAGE[dtype])  # exactly the wanted bytes
        if t.raw is not None:
            start, end = t.raw
            if end - start != count * itemsize:
                raise CorruptFileError(f"tensor {t.name!r} declares {list(t.dims)} {dtype} = {count * itemsize:,} "
                                       f"bytes but its raw_data has {end - start:,}")
            return array_at(self.buf, dtypes.STORAGE[dtype], wanted, start)
        return self._typed(t, dtype, count)[:wanted]

    def _typed(self, t: StoredTensor, dtype: str, count: int) -> np.ndarray:
        """Values kept in float_data/int32_data/int64_data/double_data/uint64_data (no raw_data)."""
        number = _FIELD_OF.get(dtype, _INT32_DATA)
        spans = [(wire, a, b) for n, wire, a, b in t.typed if n == number]
        what = f"the {_FIELD_NAMES[number]} of tensor {t.name!r}"
        if count and not spans:
            raise CorruptFileError(f"tensor {t.name!r} declares {list(t.dims)} but holds no values")
        if number in _FIXED_DTYPE:
            values = self._fixed(spans, _FIXED_DTYPE[number], count, what)
        else:
            values = self._varints(spans, count, what)
        if values.size != count:
            raise CorruptFileError(f"{what} holds {values.size:,} values, {list(t.dims)} needs {count:,}")
        return values if number in _FIXED_DTYPE else dtypes.from_integer_fields(values, dtype)

    def _fixed(self, spans: list[tuple[int, int, int]], fixed: np.dtype, count: int, what: str) -> np.ndarray:
        size = sum(b - a for wire, a, b in spans if wire in (LEN, I32, I64))
        if size != count * fixed.itemsize or any(wire == VARINT for wire, _, _ in spans):
            raise CorruptFileError(f"{what} holds {size:,} bytes, {count:,} values need {count * fixed.itemsize:,}")
        parts = [array_at(self.buf, fixed, (b - a) // fixed.itemsize, a) for _, a, b in spans]
        return np.concatenate(parts) if parts else np.empty(0, fixed)

    def _varints(self, spans: list[tuple[int, int, int]], count: int, what: str) -> np.ndarray:
        size = sum(b - a for wire, a, b in spans if wire == LEN)
        if size > _VARINT_BYTES * count:  # refuse before decoding
            raise CorruptFileError(f"{what} holds {size:,} bytes, too many for {count:,} values")
        parts = [packed_varints(self.buf, a, b, what) if wire == LEN else np.array([signed(a)], np.int64)
                 for wire, a, b in spans if wire in (LEN, VARINT)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def _densify(self, t: StoredTensor) -> np.ndarray:
        """A SparseTensorProto as a dense array (values scattered at linear or per-axis indices)."""
        assert t.sparse is not None
        values = self.decode(t.sparse[0]).reshape(-1)
        dims = dtypes.check_shape(t.dims)
        dense_bytes = math.prod(dims) * values.dtype.itemsize
        limits.check("MAX_SPARSE_EXPANSION", dense_bytes // max(len(self.buf), 1),
                     f"sparse tensor {t.name!r} densifying to {list(dims)} = {dense_bytes:,} bytes from a "
                     f"{len(self.buf):,}-byte file: ratio")
        indices = self._linear_indices(t, self.decode(t.sparse[1]), dims, values.size)
        dense = np.zeros(math.prod(dims), values.dtype)
        dense[indices] = values
        return dense.reshape(dims)

    @staticmethod
    def _linear_indices(t: StoredTensor, indices: np.ndarray, dims: tuple[int, ...], count: int) -> np.ndarray:
        """Sparse indices as positions in the flattened tensor: linear (n,) or per axis (n, rank)."""
        indices = indices.astype(np.int64)
        if indices.ndim == 2 and indices.shape[1] == len(dims) and len(dims) > 1:
            if (indices < 0).any() or (indices >= np.array(dims)).any():
                raise _outside(t, dims)
            indices = np.ravel_multi_index(tuple(indices.T), dims)
        indices = indices.reshape(-1)
        if indices.size != count:
            raise CorruptFileError(f"sparse tensor {t.name!r} has {indices.size:,} indices for {count:,} values")
        if indices.size and (indices.min() < 0 or indices.max() >= math.prod(dims)):
            raise _outside(t, dims)
        return indices

    def dequantize(self, q: np.ndarray, quant: Quantization, name: str, length: int | None) -> np.ndarray:
        """``(q - zero_point) * scale`` along the quantization axis (``length``: axis 0's full length
        when ``q`` holds only the first rows). A per-tensor scale ignores the axis, as onnxruntime does
        (DequantizeLinear's default axis 1 on a 1-D weight)."""
        if quant.scale is None and not quant.scale_optional:
            raise CorruptFileError(f"the scale of quantized weight {name!r} is not a constant of the model")
        scale, zero = self._scale_and_zero(quant, name)
        if scale.size > 1 and not -q.ndim <= quant.axis < q.ndim:
            raise CorruptFileError(f"quantization axis {quant.axis} of {name!r} is outside its {q.ndim} axes")
        return dtypes.dequantize(q, scale, zero, quant.axis, length=length)

    def _scale_and_zero(self, quant: Quantization, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-tensor or per-axis (1-D) scale and zero point; a single scale is repeated for per-axis
        zero points (``dtypes.dequantize`` takes one zero point for per-axis scales itself)."""
        scale = dtypes.to_float32(self.decode(quant.scale)) if quant.scale else np.ones(1)
        zero = self.decode(quant.zero_point) if quant.zero_point else np.zeros(1)
        if scale.ndim > 1 or zero.ndim > 1:
            raise UnreadableFeatureError(f"blocked quantization of {name!r} (scale {list(scale.shape)}) is not supported")
        if scale.size == 1 and zero.size > 1:
            scale = np.broadcast_to(scale, zero.shape)
        return scale, zero


def _outside(t: StoredTensor, dims: tuple[int, ...]) -> CorruptFileError:
    return CorruptFileError(f"sparse tensor {t.name!r} has indices outside its shape {list(dims)}")
