"""Core ML NeuralNetwork models: layer weights stored inline in ``WeightParams``.

The layers are listed in execution order; the first convolution or innerProduct layer is the first
layer. Weights are float32 (``floatValue``), float16 (``float16Value``) or quantized: ``rawValue`` codes of
1-8 bits with a linear scale/bias per output channel or a lookup table, or ``int8RawValue`` codes
with one linear scale (as coremltools' ``activate_int8_int8_matrix_multiplications`` writes them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ... import dtypes, limits
from ...errors import CorruptFileError
from ..protomessage import Message
from .entries import Entry

# NeuralNetworkLayer fields (NeuralNetwork.proto)
NAME, CONVOLUTION, INNER_PRODUCT = 1, 100, 140
# WeightParams fields
FLOAT, FLOAT16, RAW, INT8_RAW, QUANTIZATION = 1, 2, 30, 31, 40
# QuantizationParams fields
N_BITS, LINEAR, LOOKUP_TABLE = 1, 101, 102


def layer_entries(network: Message, prefix: str) -> list[Entry]:
    """Weight and bias entries of the network's conv and innerProduct layers, in layer order."""
    entries: list[Entry] = []
    layers = network.messages(1, "NeuralNetwork.layers")
    limits.check("MAX_TENSORS", len(layers), "Core ML layers")
    for k, layer in enumerate(layers):
        name = prefix + (layer.string(NAME) or f"layer_{k}")
        if (convolution := layer.message(CONVOLUTION, f"layer {name!r} convolution")) is not None:
            entries += _convolution(convolution, name, k)
        elif (dense := layer.message(INNER_PRODUCT, f"layer {name!r} innerProduct")) is not None:
            entries += _inner_product(dense, name, k)
    return entries


def _convolution(conv: Message, name: str, k: int) -> list[Entry]:
    out, kernel_channels, groups = conv.int(1), conv.int(2), max(conv.int(10), 1)
    kernel = conv.ints(20) or [3, 3]  # Core ML's default kernel size
    if len(kernel) != 2 or min(out, kernel_channels, *kernel) < 1:
        raise CorruptFileError(f"layer {name!r}: convolution of {out} x {kernel_channels} x {kernel}")
    if conv.int(60):  # deconvolution: (kernelChannels, outputChannels / groups, kH, kW)
        shape, layout, axis, kind = (kernel_channels, out // groups, *kernel), "IOHW", 1, "deconvolution"
    else:
        shape, layout, axis, kind = (out, kernel_channels, *kernel), "OIHW", 0, "convolution"
    entries = [_weight(conv.message(90, f"layer {name!r} weights"), f"{name}.weights", shape, layout, axis,
                       f"{kind} layer {k}")]
    if conv.int(70):
        entries.append(_bias(conv.message(91, f"layer {name!r} bias"), f"{name}.bias", out, k))
    return entries


def _inner_product(dense: Message, name: str, k: int) -> list[Entry]:
    n_in, n_out = dense.int(1), dense.int(2)
    if min(n_in, n_out) < 1:
        raise CorruptFileError(f"layer {name!r}: innerProduct of {n_in} -> {n_out}")
    entries = [_weight(dense.message(20, f"layer {name!r} weights"), f"{name}.weights", (n_out, n_in), "OI", 0,
                       f"innerProduct layer {k}")]
    if dense.int(10):
        entries.append(_bias(dense.message(21, f"layer {name!r} bias"), f"{name}.bias", n_out, k))
    return entries


def _weight(params: Message | None, name: str, shape: tuple[int, ...], layout: str, axis: int,
            where: str) -> Entry:
    if params is None:
        raise CorruptFileError(f"{name}: the {where} has no weights")
    dtype = _stored_dtype(params)
    return Entry(name, shape, dtype, layout, f"weight of the {where}", True, where,
                 _decoder(params, shape, axis, name))


def _bias(params: Message | None, name: str, n: int, k: int) -> Entry:
    if params is None:
        raise CorruptFileError(f"{name}: hasBias is set but no bias is stored")
    return Entry(name, (n,), _stored_dtype(params), "auto", f"bias of layer {k}", False, "",
                 _decoder(params, (n,), 0, name))


def _stored_dtype(params: Message) -> str:
    if _payload(params, INT8_RAW):  # int8 codes and one linear scale (coremltools' int8 x int8 matmul)
        return "int8"
    quantization = params.message(QUANTIZATION, "WeightParams.quantization")
    if quantization is not None:
        return f"uint{quantization.int(N_BITS)}"
    return "float16" if _payload(params, FLOAT16) else "float32"


def _payload(params: Message, number: int) -> tuple[int, int] | None:
    """Where a bytes field's payload lies in the file, or None when it is absent or empty."""
    span = params.span(number)
    return span if span is not None and span[1] > span[0] else None


def _decoder(params: Message, shape: tuple[int, ...], axis: int, name: str) -> Callable[[], np.ndarray]:
    """A function decoding the stored weights to ``shape`` (checked against the stored bytes first)."""
    count = math.prod(dtypes.check_shape(shape))
    quantization = params.message(QUANTIZATION, f"{name} quantization")

    def decode() -> np.ndarray:
        if quantization is not None:
            return _dequantize(params, quantization, shape, axis, name)
        if (half := _payload(params, FLOAT16)) is not None:
            return _exact(params.buf, half, "float16", shape, name)
        values = params.floats(FLOAT)
        if values.size != count:
            raise CorruptFileError(f"{name}: {list(shape)} needs {count:,} float values, {values.size:,} are stored")
        return values.reshape(shape)

    return decode


def _exact(buf, span: tuple[int, int], dtype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    a, b = span
    need = dtypes.nbytes(shape, dtype)
    if b - a != need:
        raise CorruptFileError(f"{name}: {list(shape)} {dtype} needs {need:,} bytes, {b - a:,} are stored")
    return np.array(dtypes.from_buffer(buf[a:b], dtype, shape))


def _dequantize(params: Message, quantization: Message, shape: tuple[int, ...], axis: int, name: str) -> np.ndarray:
    linear = quantization.message(LINEAR, f"{name} linear quantization")
    if (int8 := _payload(params, INT8_RAW)) is not None:  # int8 codes times one scale, no bias (the spec's int8RawValue)
        if linear is None:
            raise CorruptFileError(f"{name}: int8 weights without their linear scale")
        return dtypes.scale_offset(_exact(params.buf, int8, "int8", shape, name), linear.floats(1), 0.0, axis)
    a, b = params.span(RAW) or (0, 0)
    codes = dtypes.unpack_bits(params.buf[a:b], quantization.int(N_BITS), math.prod(shape)).reshape(shape)
    if linear is not None:
        return dtypes.scale_offset(codes, linear.floats(1), linear.floats(2), axis)
    table = quantization.message(LOOKUP_TABLE, f"{name} lookup table")
    if table is None:
        raise CorruptFileError(f"{name}: quantized weights with neither a linear scale nor a lookup table")
    return dtypes.lookup(codes, table.floats(1))
