"""Decoding of stored numbers to float32, once for every format.

Formats name their element types differently (ONNX ``FLOAT16``, safetensors ``BF16``, GGUF ``Q8_0``);
each converter maps its names onto the vocabulary here (numpy-style names) and lets this module do
the decoding. NumPy has no bfloat16 or float8, so those are decoded from their bit patterns.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np

from . import limits
from .errors import CorruptFileError, UnreadableFeatureError

#: Storage dtype of each element type filtergrid can decode (bit patterns for the ones NumPy lacks).
STORAGE: dict[str, np.dtype] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float8_e4m3fn": np.dtype("u1"),
    "float8_e5m2": np.dtype("u1"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "uint32": np.dtype("<u4"),
    "uint16": np.dtype("<u2"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}


def itemsize(dtype: str) -> int:
    try:
        return STORAGE[dtype].itemsize
    except KeyError:
        raise CorruptFileError(f"unsupported element type {dtype!r}") from None


def nbytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes a tensor of this shape and type occupies when stored (Python ints: no overflow)."""
    return math.prod(check_shape(shape)) * itemsize(dtype)


def check_shape(shape) -> tuple[int, ...]:
    """A shape read from a file: non-negative ints, bounded rank, decoded size under the limit."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise CorruptFileError(f"shape {shape!r} is not a list of integers") from None
    if len(dims) > 8 or any(d < 0 for d in dims):
        raise CorruptFileError(f"shape {list(dims)} is not a valid tensor shape")
    if 0 in dims and math.prod(d for d in dims if d) * 4 > limits.MAX_TENSOR_BYTES:
        # empty, but NumPy still refuses to reshape to it ("array is too big"): no real tensor
        raise CorruptFileError(f"shape {list(dims)} is empty along one axis and astronomically long along others")
    limits.check("MAX_TENSOR_BYTES", math.prod(dims) * 4, f"float32 bytes of a tensor of shape {list(dims)}")
    return dims


def check_fits(shape, dtype: str, available: int, what: str) -> tuple[int, ...]:
    """Refuse a declared shape x dtype that needs more bytes than the file holds, before allocating."""
    dims = check_shape(shape)
    need = math.prod(dims) * itemsize(dtype)
    if need > available:
        raise CorruptFileError(
            f"{what} declares {list(dims)} {dtype} = {need:,} bytes but only {available:,} bytes exist"
        )
    return dims


def from_buffer(buffer, dtype: str, shape, offset: int = 0) -> np.ndarray:
    """A zero-copy view of stored elements (bounds checked against the buffer)."""
    dims = check_fits(shape, dtype, len(memoryview(buffer)) - offset, "tensor")
    count = math.prod(dims)
    return np.frombuffer(buffer, dtype=STORAGE[dtype], count=count, offset=offset).reshape(dims)


#: Element types NumPy has no dtype for: stored as bit patterns, decoded to float32 when read.
BIT_PATTERNS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def native(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Stored elements as an array NumPy understands: bit-pattern types decoded, others copied out."""
    return to_float32(stored, dtype) if dtype in BIT_PATTERNS else np.array(stored)


def from_integer_fields(values: np.ndarray, dtype: str) -> np.ndarray:
    """Elements kept one per integer (protobuf ``int32_data``/``uint64_data``) in their storage dtype.

    Each integer holds the element's value, or for float16 and the bit-pattern types its bits:
    both are the low bytes of the integer, so the integers are cut to the element's width.
    """
    storage = STORAGE[dtype]
    if storage.kind == "b":
        return np.asarray(values) != 0
    return np.asarray(values).astype(f"<u{storage.itemsize}").view(storage)


def to_float32(stored: np.ndarray, dtype: str | None = None) -> np.ndarray:
    """Decode stored elements (``dtype`` names bit-pattern types like bfloat16) to float32."""
    dtype = dtype or stored.dtype.name
    if dtype == "bfloat16":
        return (np.asarray(stored, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    if dtype in BIT_PATTERNS:
        return _float8_table(dtype)[np.asarray(stored, dtype=np.uint8)]
    if dtype not in STORAGE and stored.dtype.kind not in "fiub":
        raise CorruptFileError(f"unsupported element type {dtype!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range becomes inf, shown as such
        return np.asarray(stored).astype(np.float32, copy=False)


@lru_cache(maxsize=None)
def _float8_table(dtype: str) -> np.ndarray:
    """All 256 values of an 8-bit float format (OCP FP8: E4M3FN has no inf, NaN at 0x7f/0xff)."""
    bits = np.arange(256, dtype=np.uint16)
    if dtype == "float8_e5m2":  # the high byte of a float16
        return (bits << 8).view(np.float16).astype(np.float32)
    sign = np.where(bits & 0x80, -1.0, 1.0)
    exp = (bits >> 3) & 0xF
    man = (bits & 0x7).astype(np.float64)
    value = np.where(exp == 0, man / 8 * 2.0**-6, (1 + man / 8) * 2.0 ** (exp.astype(np.float64) - 7))
    value = sign * value
    value[(bits & 0x7F) == 0x7F] = np.nan
    return value.astype(np.float32)


def dequantize(q: np.ndarray, scale, zero_point=0, axis: int | None = None, *,
               length: int | None = None) -> np.ndarray:
    """Affine dequantization ``(q - zero_point) * scale``, per tensor or along ``axis``.

    Used for ONNX DequantizeLinear/QLinearConv, TFLite int8 and PyTorch per-tensor/per-channel
    quantized storages, so their conventions agree. ``length`` is the stored tensor's full length
    along axis 0 when ``q`` holds only its first rows (``Reader.read(rows=)``): per-axis-0 scales
    are checked against that length, then cut to the rows read.
    """
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float32)
    zero = np.asarray(zero_point, dtype=np.float32)
    if axis is not None and scale.ndim == 1 and scale.size > 1:
        scale, zero = _per_axis(q, scale, zero, axis % q.ndim, length)
    elif scale.size != 1 or zero.size != 1:
        raise CorruptFileError(f"per-tensor quantization with {scale.size} scales and {zero.size} zero points")
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32, copy=False)


def _per_axis(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int,
              length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Scales and zero points shaped to broadcast along ``axis`` of ``q`` (cut to the rows read)."""
    full = length if axis == 0 and length is not None else q.shape[axis]
    if scale.size != full or zero.size not in (1, scale.size) or q.shape[axis] > full:
        raise CorruptFileError(f"quantization has {scale.size} scales for axis {axis} of length {full}")
    if q.shape[axis] < full:  # only the first rows were read
        scale = scale[: q.shape[axis]]
        zero = zero[: q.shape[axis]] if zero.size > 1 else zero
    bshape = [1] * q.ndim
    bshape[axis] = -1
    return scale.reshape(bshape), zero.reshape(bshape) if zero.size > 1 else zero.reshape(())


def unpack_bits(packed, nbits: int, count: int) -> np.ndarray:
    """``count`` unsigned ``nbits``-bit codes packed most significant bit first (Core ML, OpenVINO u4/u1).

    The packed bytes must hold them all; the result is uint8 (nbits <= 8).
    """
    if not 1 <= nbits <= 8:
        raise UnreadableFeatureError(f"{nbits}-bit codes are not supported (1 to 8 bits)")
    data = np.frombuffer(packed, dtype=np.uint8)
    if data.size * 8 < count * nbits:
        raise CorruptFileError(f"{count:,} codes of {nbits} bits need {math.ceil(count * nbits / 8):,} bytes, "
                               f"{data.size:,} are stored")
    if nbits == 8:
        return data[:count].copy()
    bits = np.unpackbits(data[:math.ceil(count * nbits / 8)])[:count * nbits].reshape(count, nbits)
    weights = (1 << np.arange(nbits - 1, -1, -1)).astype(np.uint8)
    return (bits * weights).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def scale_offset(q: np.ndarray, scale, offset, axis: int = 0) -> np.ndarray:
    """``q * scale + offset`` with one scale/offset per slice along ``axis`` (or one for all).

    Core ML NeuralNetwork linear quantization stores a scale and an additive bias, not a zero point;
    computed in float64 like coremltools, then stored as float32.
    """
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float64).ravel()
    offset = np.asarray(offset, dtype=np.float64).ravel()
    if scale.size not in (1, q.shape[axis]) or offset.size not in (1, scale.size):
        raise CorruptFileError(f"{scale.size} scales and {offset.size} offsets for axis {axis} of length {q.shape[axis]}")
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q.astype(np.float64) * scale.reshape(shape) + offset.reshape(shape)).astype(np.float32)


def lookup(codes: np.ndarray, table) -> np.ndarray:
    """Palettized weights: each code indexes a table of values (Core ML lookup-table quantization)."""
    table = np.asarray(table, dtype=np.float32).ravel()
    if codes.size and int(codes.max()) >= table.size:
        raise CorruptFileError(f"a code {int(codes.max())} indexes a table of {table.size} values")
    return table[codes]


#: The byte orders a pickled ``numpy.dtype`` records in its state, spelled as ``newbyteorder`` takes them
#: ('|' marks one-byte types, which have none).
PICKLED_BYTE_ORDERS: dict[str, Literal["<", ">", "="]] = {"<": "<", ">": ">", "=": "=", "|": "="}


def pickled_dtype(code: str, order: str) -> np.dtype:
    """The dtype a pickle's ``numpy.dtype(code)`` plus its state's byte order stand for."""
    return np.dtype(code).newbyteorder(PICKLED_BYTE_ORDERS[order])
