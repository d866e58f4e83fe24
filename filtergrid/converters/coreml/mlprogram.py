"""Core ML ML Programs (MIL): const ops hold weights inline or in the package's weight blob.

The main function's block lists operations in execution order; the first ``conv``/``conv_transpose``/
``linear``/``matmul`` with a constant weight is the first layer. A weight is followed back through
``cast`` and the decompression ops of :mod:`.constexpr` (quantized, palettized, pruned, and their
chains) to its stored bytes; a weight computed any other way stays listed but reading it refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ... import dtypes, limits
from ...errors import CorruptFileError, UnreadableFeatureError
from ...safeio import ModelPath, resolve_inside
from ..protomessage import Message
from . import constexpr
from .blob import BlobFile
from .entries import Entry

#: MIL DataType enum (MIL.proto) -> filtergrid dtype (sub-byte types packed low bits first).
MIL_DTYPES = {1: "bool", 10: "float16", 11: "float32", 12: "float64", 13: "bfloat16", 21: "int8", 22: "int16",
              23: "int32", 24: "int64", 25: "int4", 31: "uint8", 32: "uint16", 33: "uint32", 34: "uint64",
              35: "uint4", 36: "uint2", 37: "uint1", 38: "uint6", 39: "uint3", 40: "float8_e4m3fn",
              41: "float8_e5m2"}
#: Weight-bearing ops: the weight's input name and its layout by rank.
WEIGHT_OPS = {"conv": ("weight", {3: "OIK", 4: "OIHW", 5: "OIDHW"}),
              "conv_transpose": ("weight", {4: "IOHW"}),
              "linear": ("weight", {2: "OI"}),
              "matmul": ("y", {2: "IO"})}
#: TensorValue fields holding each dtype's immediate values: floats, ints, bools, longInts, doubles
#: (coremltools writes int16/uint16 to ints; float16, int8, uint8 and the rest to bytes).
_IMMEDIATE = {"float32": 1, "int32": 2, "int16": 2, "uint16": 2, "bool": 3, "int64": 5, "float64": 6}
_BYTES = 7
MODEL_PATH = "@model_path/"


def _map(entries: list[Message], what: str) -> dict[str, Message]:
    """A protobuf map<string, message> (entries of key = 1, value = 2)."""
    out = {}
    for entry in entries:
        value = entry.message(2, f"{what} value")
        if value is not None:
            out[entry.string(1)] = value
    return out


@dataclass(frozen=True)
class Tensor:
    """A typed MIL value: dtype, shape and where its elements are (inline or in a blob)."""

    dtype: str
    shape: tuple[int, ...]
    value: Message

    def decode(self, blobs: Callable[[str], BlobFile], what: str) -> np.ndarray:
        blob = self.value.message(5, f"{what} blobFileValue")
        if blob is not None:
            return blobs(blob.string(1)).read(blob.int(2), self.dtype, self.shape, what)
        immediate = self.value.message(3, f"{what} immediateValue")
        tensor = immediate.message(1, f"{what} tensor") if immediate else None
        if tensor is None:
            raise CorruptFileError(f"{what}: a constant with neither an immediate value nor a blob")
        return _immediate(tensor, self.dtype, self.shape, what)


def _immediate(tensor: Message, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    count = int(np.prod(dtypes.check_shape(shape)))
    elements = tensor.message(_BYTES, what)  # None exactly when the field is absent
    if elements is not None:  # float16, int8, uint4 ...: the elements' bytes
        a, b = elements.span(1) or (0, 0)
        return from_bytes(tensor.buf[a:b], dtype, shape, what)
    field = _IMMEDIATE.get(dtype)
    repeated = tensor.message(field, what) if field else None
    if repeated is None:
        raise CorruptFileError(f"{what}: no immediate {dtype} values")
    if dtype == "float64":  # packed fixed64: the elements' bytes
        a, b = repeated.span(1) or (0, 0)
        return from_bytes(repeated.buf[a:b], dtype, shape, what)
    if dtype == "float32":
        values = repeated.floats(1)
    else:
        try:
            values = np.array(repeated.ints(1), dtype=dtypes.STORAGE[dtype])
        except (OverflowError, ValueError):
            raise CorruptFileError(f"{what}: immediate values out of range for {dtype}") from None
    if values.size != count:
        _short(what, values.size, count)
    return values.reshape(shape)


def from_bytes(data, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Stored elements (a copy); sub-byte types unpacked, each code's bits and the codes low first."""
    packed = dtype in dtypes.PACKED
    need = dtypes.packed_nbytes(shape, dtype) if packed else dtypes.nbytes(shape, dtype)
    if len(data) != need:
        _short(what, len(data), need)
    return dtypes.unpack(data, dtype, shape, "lsb") if packed else np.array(dtypes.from_buffer(data, dtype, shape))


def _short(what: str, have: int, need: int):
    raise CorruptFileError(f"{what}: {need:,} stored units needed, {have:,} are there")


def _tensor(value: Message, what: str) -> Tensor:
    value_type = value.message(2, f"{what} type")
    tensor_type = value_type.message(1, f"{what} tensorType") if value_type else None
    if tensor_type is None:
        raise CorruptFileError(f"{what}: not a tensor")
    code = tensor_type.int(1)
    dtype = MIL_DTYPES.get(code)
    if dtype is None:
        raise UnreadableFeatureError(f"{what}: MIL data type {code} is not supported")
    dims = []
    for dim in tensor_type.messages(3, f"{what} dimensions"):
        constant = dim.message(1, f"{what} dimension")
        if constant is None:
            raise CorruptFileError(f"{what}: a constant of unknown size")
        dims.append(constant.int(1))
    return Tensor(dtype, dtypes.check_shape(dims), value)


@dataclass(frozen=True)
class _Op:
    index: int
    type: str
    inputs: dict[str, list[Message]]  # input name -> its bindings
    outputs: list[str]
    attributes: dict[str, Message]
    output_types: dict[str, Message]  # NamedValueType: its type is field 2, as a Value's


def _ops(block: Message) -> list[_Op]:
    ops = []
    for k, op in enumerate(block.messages(3, "Block.operations")):
        what = f"operation {k}"
        inputs = {name: argument.messages(1, f"{what} argument {name!r}")
                  for name, argument in _map(op.messages(2, f"{what} inputs"), f"{what} inputs").items()}
        outputs = {o.string(1): o for o in op.messages(3, f"{what} outputs")}
        ops.append(_Op(k, op.string(1), inputs, list(outputs), _map(op.messages(5, f"{what} attributes"), what),
                       outputs))
    limits.check("MAX_TENSORS", len(ops), "ML Program operations")
    return ops


def main_block(program: Message) -> Message:
    """The block of the ``main`` function (or the only function) for its own opset."""
    functions = _map(program.messages(2, "Program.functions"), "Program.functions")
    function = functions.get("main") or next(iter(functions.values()), None)
    if function is None:
        raise CorruptFileError("the ML Program has no function")
    blocks = _map(function.messages(3, "Function.block_specializations"), "Function.block_specializations")
    block = blocks.get(function.string(2)) or next(iter(blocks.values()), None)
    if block is None:
        raise CorruptFileError("the ML Program's main function has no block")
    return block


class ProgramWalk:
    """Entries of one ML Program: weights of its weight-bearing ops in op order, then their biases."""

    def __init__(self, program: Message, folder: ModelPath, prefix: str, blobs: dict[str, BlobFile]):
        self._folder, self._blobs = folder, blobs
        self._ops = _ops(main_block(program))
        self._producer = {name: op for op in self._ops for name in op.outputs}
        self.entries: list[Entry] = []
        for op in self._ops:
            if op.type in WEIGHT_OPS:
                self.entries += self._weight_entries(op, prefix)

    def _blob(self, name: str) -> BlobFile:
        relative = name[len(MODEL_PATH):] if name.startswith(MODEL_PATH) else name
        path = resolve_inside(self._folder, relative, "weight blob")
        key = str(path)
        if key not in self._blobs:
            self._blobs[key] = BlobFile(path)
        return self._blobs[key]

    def _weight_entries(self, op: _Op, prefix: str) -> list[Entry]:
        weight_input, layouts = WEIGHT_OPS[op.type]
        where = f"{op.type} op {op.index}" + (f" ({op.outputs[0]})" if op.outputs else "")
        entries = []
        for role, input_name in ((weight_input, weight_input), ("bias", "bias")):
            found = self._source(op, input_name, where)
            if found is None:
                continue
            name, tensor, how, decode = found
            layout = layouts.get(len(tensor.shape), "auto") if role != "bias" else "auto"
            if op.type == "matmul" and self._flag(op, "transpose_y"):
                layout = "OI"
            # A weight computed by an op filtergrid does not evaluate stays the first layer: reading it
            # refuses, rather than silently showing the next layer.
            candidate = role != "bias" and layout != "auto"
            why = (f"{role} of the {where}{how}" if decode is not None
                   else f"{role} of the {where}, computed by {how} (not read)")
            entries.append(Entry(prefix + name, tensor.shape, tensor.dtype, layout, why, candidate,
                                 where, decode or _refuse(name, how)))
        return entries

    def _source(self, op: _Op, input_name: str, where: str, depth: int = 0):
        """(name, tensor, how it was reached, decoder or None) of a constant input, else None."""
        bindings = op.inputs.get(input_name) or []
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        inline = binding.message(2, f"{where} {input_name}")
        if inline is not None:
            tensor = _tensor(inline, f"{where} {input_name}")
            return f"{where}.{input_name}", tensor, " (inline)", lambda: tensor.decode(self._blob, where)
        return self._const(binding.string(1), "", depth, op.index)

    def _const(self, name: str, how: str, depth: int, before: int | None = None):
        """(name, tensor, how, decoder) of the constant value ``name``, or None if it is computed at run time.

        ``before`` is the index of the op using it: a MIL block computes a value before its uses, so a
        producer at or after its user (a chain that loops) is refused.
        """
        producer = self._producer.get(name)
        if producer is None or depth > limits.MAX_NESTING:
            return None
        if before is not None and producer.index >= before:
            raise CorruptFileError(f"operation {before} uses {name[:80]!r}, computed by operation {producer.index} "
                                   f"after it (an op chain that loops)")
        what = f"constant {name!r}"
        if producer.type == "const" and "val" in producer.attributes:
            tensor = _tensor(producer.attributes["val"], what)
            return name, tensor, how, lambda: tensor.decode(self._blob, what)
        if producer.type == "cast":
            found = self._source(producer, "x", what, depth)
            return found and (found[0], found[1], f" (behind a cast){found[2]}", found[3])
        if producer.type in constexpr.OPS:
            return self._decompressed(producer, name, what, depth)
        if producer.type.startswith("constexpr_"):
            return name, _tensor(producer.output_types[name], what), producer.type, None
        return None

    def _decompressed(self, op: _Op, name: str, what: str, depth: int):
        """A weight computed by a decompression op from constants (themselves constants or other such ops)."""
        required, optional, stored, decoder = constexpr.OPS[op.type]
        params = {key: self._parameter(op, key, what, depth) for key in (*required, *optional)}
        missing = [key for key in required if params[key] is None]
        if missing:
            raise CorruptFileError(f"{what}: {op.type} without its {'/'.join(missing)}")
        output = _tensor(op.output_types[name], what)
        position = op.outputs.index(name)
        dtype = _stored_dtype(op.type, params[stored][1], params)
        inner = params[stored][2]  # " (uint2, behind constexpr_lut_to_sparse)" when the codes are computed too
        chain = f" <- {inner[inner.index('behind ') + 7:-1]}" if "behind " in inner else ""
        how = f" ({dtype}, behind {op.type}{chain})"
        unreadable = next((found[2] for found in params.values() if found is not None and found[3] is None), None)
        if unreadable is not None:
            return name, Tensor(dtype, output.shape, output.value), f"{op.type} of a value computed by {unreadable}", None

        def decode() -> np.ndarray:
            value = decoder({key: found[3]() for key, found in params.items() if found is not None})
            value = value[position] if isinstance(value, tuple) else value
            if value.shape != output.shape:
                raise CorruptFileError(f"{what}: {op.type} computes {list(value.shape)}, the program declares "
                                       f"{list(output.shape)}")
            return value

        return name, Tensor(dtype, output.shape, output.value), how, decode

    def _parameter(self, op: _Op, key: str, what: str, depth: int):
        """An op parameter: an attribute (iOS16 constexpr ops) or a constant input (iOS18)."""
        if key in op.attributes:
            tensor = _tensor(op.attributes[key], f"{what} {key}")
            return key, tensor, "", lambda: tensor.decode(self._blob, f"{what} {key}")
        return self._source(op, key, what, depth + 1)

    def _flag(self, op: _Op, input_name: str) -> bool:
        found = self._source(op, input_name, f"{op.type} op {op.index}")
        return bool(found and found[3] and found[3]().reshape(-1)[:1].any())


def _stored_dtype(op_type: str, codes: Tensor, params: dict) -> str:
    """The type the weight's codes are stored in (iOS16 LUT indices: log2(table size) bits in bytes)."""
    if op_type == "constexpr_lut_to_dense" and params.get("shape") is not None:
        size = int(np.prod(params["lut"][1].shape))
        return f"uint{max(size - 1, 1).bit_length()}"
    return codes.dtype


def _refuse(name: str, how: str) -> Callable[[], np.ndarray]:
    def decode() -> np.ndarray:
        raise UnreadableFeatureError(f"{name!r} is computed by {how} when the model loads; filtergrid does not run it")
    return decode
