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
    "float8_e8m0": np.dtype("u1"),
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
BIT_PATTERNS = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0", "nf4", "float4_e2m1")
#: Sub-byte element types: bits per element. Packed back to back with no padding between elements
#: (in which bit order is the format's to say: :func:`unpack`); ``int4`` is two's complement, the
#: 4-bit floats are codes into :func:`_code_table`.
PACKED: dict[str, int] = {"uint1": 1, "uint2": 2, "uint3": 3, "uint4": 4, "uint6": 6, "int4": 4, "nf4": 4,
                          "float4_e2m1": 4}


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
        return _code_table(dtype)[np.asarray(stored, dtype=np.uint8)]
    if dtype not in STORAGE and stored.dtype.kind not in "fiub":
        raise CorruptFileError(f"unsupported element type {dtype!r}")
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range becomes inf, shown as such
        return np.asarray(stored).astype(np.float32, copy=False)


#: NormalFloat4 (QLoRA; OpenVINO ``nf4``): the 16 quantiles of a unit normal, as OpenVINO decodes them.
NF4_VALUES = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
              -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
              0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0)


@lru_cache(maxsize=None)
def _code_table(dtype: str) -> np.ndarray:
    """All values of an 8- or 4-bit float format, indexed by code.

    OCP FP8 (E4M3FN has no inf, NaN at 0x7f/0xff), OCP MX E8M0 (a power of two, 2**(e - 127), NaN at
    0xff), OCP FP4 E2M1 (sign, 2 exponent bits, 1 mantissa bit, no inf/NaN) and NF4.
    """
    bits = np.arange(256, dtype=np.uint16)
    if dtype == "nf4":
        return np.array(NF4_VALUES, dtype=np.float32)
    if dtype == "float4_e2m1":
        magnitude = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)
        return np.concatenate([magnitude, -magnitude])
    if dtype == "float8_e8m0":
        return np.where(bits == 0xFF, np.nan, 2.0 ** (bits.astype(np.float64) - 127)).astype(np.float32)
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
    # float32 throughout (scale and zero are float32); asarray: NumPy makes 0-d arithmetic a scalar
    return np.asarray((q.astype(np.float32) - zero) * scale)


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


def unpack_bits(packed, nbits: int, count: int, order: str = "msb") -> np.ndarray:
    """``count`` unsigned ``nbits``-bit codes packed back to back, as uint8 (nbits <= 8).

    ``order="msb"``: the first code sits in the most significant bits of the first byte (Core ML
    NeuralNetwork, OpenVINO ``u1``); ``"lsb"``: in the least significant bits, each code's own bits
    low first (Core ML ML Program blobs, OpenVINO ``u2``/``u4``/``i4``/``nf4``, two 4-bit codes a
    byte, low nibble first). The packed bytes must hold them all.
    """
    if not 1 <= nbits <= 8:
        raise UnreadableFeatureError(f"{nbits}-bit codes are not supported (1 to 8 bits)")
    data = np.frombuffer(packed, dtype=np.uint8)
    used = math.ceil(count * nbits / 8)
    if data.size < used:
        raise CorruptFileError(f"{count:,} codes of {nbits} bits need {used:,} bytes, {data.size:,} are stored")
    if nbits == 8:
        return data[:count].copy()
    stream = np.unpackbits(data[:used], bitorder="little" if order == "lsb" else "big")
    bits = stream[:count * nbits].reshape(count, nbits)
    powers = np.arange(nbits) if order == "lsb" else np.arange(nbits - 1, -1, -1)
    return (bits << powers.astype(np.uint8)).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def packed_nbytes(shape, dtype: str, order: str = "lsb") -> int:
    """Bytes a tensor of a sub-byte type occupies (its last byte, or 3-byte group, may be part-filled)."""
    count, nbits = math.prod(check_shape(shape)), PACKED[dtype]
    if order == "split":
        return math.ceil(count / (24 // nbits)) * 3
    return math.ceil(count * nbits / 8)


def unpack(packed, dtype: str, shape, order: str) -> np.ndarray:
    """A tensor of a sub-byte type (:data:`PACKED`) as one code per byte; ``int4`` sign-extended to int8.

    ``order`` is :func:`unpack_bits`' ``"msb"``/``"lsb"``, or ``"split"``: OpenVINO's ``u3``/``u6``,
    whose every 3 bytes hold 24 / nbits codes, their low bits in the first two bytes and their top bits
    in the third (each part packed high bits first, as OpenVINO's CPU plugin and ``openvino.helpers``
    unpack them).
    """
    dims = check_shape(shape)
    count, nbits = math.prod(dims), PACKED[dtype]
    codes = _unpack_split(packed, nbits, count) if order == "split" else unpack_bits(packed, nbits, count, order)
    codes = codes.reshape(dims)
    if dtype == "int4":
        return ((codes ^ 8).astype(np.int8) - 8).astype(np.int8)
    return codes


def _unpack_split(packed, nbits: int, count: int) -> np.ndarray:
    if nbits not in (3, 6):
        raise CorruptFileError(f"{nbits}-bit codes in 3-byte groups (only 3 and 6 bits are)")
    per_group = 24 // nbits
    groups = math.ceil(count / per_group)
    data = np.frombuffer(packed, dtype=np.uint8)
    if data.size < groups * 3:
        raise CorruptFileError(f"{count:,} codes of {nbits} bits need {groups * 3:,} bytes, {data.size:,} are stored")
    data = data[:groups * 3].reshape(groups, 3)
    low_bits = 16 // per_group
    low = unpack_bits(data[:, :2].tobytes(), low_bits, groups * per_group, "msb")
    high = unpack_bits(data[:, 2].tobytes(), 8 // per_group, groups * per_group, "msb")
    return (low | (high << low_bits))[:count]


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


def lookup(codes: np.ndarray, table, vector_axis: int | None = None) -> np.ndarray:
    """Palettized weights: each code indexes a lookup table of values (Core ML, ncnn).

    ``table`` is one flat table, or Core ML iOS18's grid of tables: shape ``(*grid, palettes,
    vector)`` with one grid axis per axis of ``codes``, each dividing it (a block of codes shares a
    table). A vector of ``vector`` > 1 values fills consecutive positions along ``vector_axis``.
    """
    codes = np.asarray(codes)
    table = np.asarray(table)
    if table.ndim <= 1:
        table = table.reshape((1,) * codes.ndim + (-1, 1))
    grid, (palettes, vector) = table.shape[:-2], table.shape[-2:]
    if len(grid) != codes.ndim or any(g == 0 or n % g for n, g in zip(codes.shape, grid)):
        raise CorruptFileError(f"a lookup-table grid {list(grid)} does not divide codes of shape {list(codes.shape)}")
    if codes.size and int(codes.max()) >= palettes:
        raise CorruptFileError(f"a code {int(codes.max())} indexes a table of {palettes} values")
    check_shape((*codes.shape, vector))  # vectors multiply the codes: bounded before expanding
    group = np.zeros(codes.shape, dtype=np.intp)
    for axis, (n, g) in enumerate(zip(codes.shape, grid)):
        shape = [1] * codes.ndim
        shape[axis] = n
        group = group * g + (np.arange(n) // (n // g)).reshape(shape)
    values = table.reshape(-1, palettes, vector)[group, codes.astype(np.intp)]  # (*codes.shape, vector)
    if vector == 1:
        return values[..., 0]
    if vector_axis is None or not -codes.ndim <= vector_axis < codes.ndim:
        raise CorruptFileError(f"vectors of {vector} values with vector axis {vector_axis}")
    axis = vector_axis % codes.ndim
    out = list(codes.shape)
    out[axis] *= vector
    return np.moveaxis(values, -1, axis + 1).reshape(out)


def blockwise(q: np.ndarray, scale, offset=None) -> np.ndarray:
    """Block-wise affine dequantization ``scale * (q - offset)`` (Core ML iOS18, group-wise int4).

    ``scale`` (and ``offset``) have ``q``'s rank; along each axis a block of ``q.shape[i] //
    scale.shape[i]`` consecutive elements shares one. Computed in the scale's float type, as
    coremltools' ``constexpr_blockwise_shift_scale.decompress`` does.
    """
    q = np.asarray(q)
    scale = np.asarray(scale)
    if scale.dtype.kind != "f":
        raise CorruptFileError(f"block-wise scales of type {scale.dtype}")
    if scale.ndim != q.ndim or any(s == 0 or n % s for n, s in zip(q.shape, scale.shape)):
        raise CorruptFileError(f"scales of shape {list(scale.shape)} do not divide data of shape {list(q.shape)}")
    if offset is not None and np.shape(offset) != scale.shape:
        raise CorruptFileError(f"offsets of shape {list(np.shape(offset))}, scales of shape {list(scale.shape)}")
    blocked = [d for s, n in zip(scale.shape, q.shape) for d in (s, n // s)]
    per_block = [d for s in scale.shape for d in (s, 1)]
    data = q.astype(scale.dtype).reshape(blocked)
    if offset is not None:
        data = data - np.asarray(offset).astype(scale.dtype).reshape(per_block)
    return (scale.reshape(per_block) * data).reshape(q.shape)


def sparse_to_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pruned weights: ``nonzero`` values fill the set positions of ``mask`` in order, zeros elsewhere."""
    nonzero, mask = np.asarray(nonzero).reshape(-1), np.asarray(mask) != 0
    if int(mask.sum()) != nonzero.size:
        raise CorruptFileError(f"a sparsity mask with {int(mask.sum()):,} set bits for {nonzero.size:,} values")
    dense = np.zeros(mask.shape, dtype=nonzero.dtype)
    dense[mask] = nonzero
    return dense


#: The byte orders a pickled ``numpy.dtype`` records in its state, spelled as ``newbyteorder`` takes them
#: ('|' marks one-byte types, which have none).
PICKLED_BYTE_ORDERS: dict[str, Literal["<", ">", "="]] = {"<": "<", ">": ">", "=": "=", "|": "="}


def pickled_dtype(code: str, order: str) -> np.dtype:
    """The dtype a pickle's ``numpy.dtype(code)`` plus its state's byte order stand for."""
    return np.dtype(code).newbyteorder(PICKLED_BYTE_ORDERS[order])
