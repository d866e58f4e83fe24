"""PaddlePaddle inference models: a program (``.pdmodel`` or PIR ``.json``) and its ``.pdiparams`` values.

``paddle.jit.save`` / ``paddle.static.save_inference_model`` write the program as a ``ProgramDesc``
protobuf (``.pdmodel``, Paddle 2 and Paddle 3 with ``FLAGS_enable_pir_api=0``) or as PIR JSON
(``.json``, the Paddle 3 default). Both write the same ``.pdiparams`` (``save_combine``): one
record per persistable parameter, in sorted name order:
``uint32 version | uint64 lod_level | per level: uint64 bytes + offsets | uint32 version |
int32 desc size | TensorDesc protobuf (data_type=1, dims=2) | raw little-endian values``.
Spec: paddle/fluid/framework/framework.proto and DenseTensor serialization (tensor_util.cc).

The first layer is the first conv2d/depthwise_conv2d/matmul/matmul_v2/mul op, in program order,
whose data input descends from the feed (through ops without weights). Conv filters are OIHW;
matmul weights (in, out) unless ``trans_y``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, FiltergridError, plain
from ..layout import PADDLE
from ..safeio import ModelPath, array_at, check_extent, map_readonly, model_path, resolve_inside, window
from .base import Probe, lookup, tensor_info, written_by
from .protomessage import Message
from .protowire import read_varint

#: VarType.Type codes of framework.proto that are numbers.
_PROTO_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
                 20: "uint8", 21: "int8", 22: "bfloat16", 32: "float8_e4m3fn", 33: "float8_e5m2",
                 36: "uint16", 37: "uint32", 38: "uint64"}
#: PIR builtin type names (``0.t_f32``) of the same numbers.
_PIR_DTYPES = {"t_bool": "bool", "t_i16": "int16", "t_i32": "int32", "t_i64": "int64", "t_f16": "float16",
               "t_f32": "float32", "t_f64": "float64", "t_ui8": "uint8", "t_i8": "int8", "t_bf16": "bfloat16",
               "t_f8e4m3fn": "float8_e4m3fn", "t_f8e5m2": "float8_e5m2"}
_DENSE_TENSOR, _FEED_MINIBATCH = 7, 9
#: Ops that apply a weight to data: op type -> (data input slot, weight input slot).
_WEIGHT_OPS = {"conv2d": ("Input", "Filter"), "depthwise_conv2d": ("Input", "Filter"),
               "matmul_v2": ("X", "Y"), "matmul": ("X", "Y"), "mul": ("X", "Y")}
#: PIR ops list inputs by position; these are the names the same inputs have in a ProgramDesc.
_PIR_SLOTS = {"conv2d": ("Input", "Filter"), "depthwise_conv2d": ("Input", "Filter"), "matmul": ("X", "Y")}
_TRANSPOSE_ATTRS = ("trans_y", "transpose_Y", "transpose_y")
#: Fixed bytes of one .pdiparams record before its TensorDesc: the smallest record there can be.
_RECORD_HEAD = 4 + 8 + 4 + 4
#: How paddle.jit.save starts a PIR program (no whitespace: the table's ``heads`` rely on it).
_PIR_MAGIC = re.compile(rb'^\{"base_code":\{[^}]{0,200}"magic":"pir"')


def sniff(probe: Probe) -> bool:
    if probe.is_dir:
        return False
    if probe.path.suffix.lower() == ".pdiparams":
        return probe.head[:4] == b"\0\0\0\0"
    return _is_program_desc(probe.head) or bool(_PIR_MAGIC.match(probe.head))


def _is_program_desc(head: bytes) -> bool:
    """ProgramDesc starts with its first block (field 1), whose idx 0 and parent_idx come first."""
    if head[:1] != b"\x0a":
        return False
    try:
        _, start = read_varint(head, 1, len(head), "ProgramDesc")
    except CorruptFileError:
        return False
    return head[start:start + 3] == b"\x08\x00\x10"


def open(path: ModelPath) -> PaddleInferenceReader:
    path = model_path(path)  # a local Path or a RemotePath: both have parent, name, stat, read_bytes
    stem = path.name[:len(path.name) - len(path.suffix)]
    if path.suffix.lower() != ".pdiparams":
        return PaddleInferenceReader(path, resolve_inside(path.parent, stem + ".pdiparams", "parameters file"))
    for suffix in (".pdmodel", ".json"):
        program = resolve_inside(path.parent, stem + suffix, "program file")
        if program.is_file():
            return PaddleInferenceReader(program, path)
    raise FiltergridError(f"a .pdiparams file holds only parameter values; filtergrid needs its program file "
                          f"({stem[:80]}.pdmodel or {stem[:80]}.json) beside it to know the layers")


@dataclass(frozen=True)
class _Param:
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class _Op:
    type: str
    inputs: dict[str, list[str]]  # slot -> value names
    outputs: list[str]
    transposed: bool  # matmul's weight stored (out, in)


@dataclass
class _Program:
    params: dict[str, _Param]
    ops: list[_Op]
    feeds: set[str]
    #: What the program file says wrote it: ProgramDesc ``version``, PIR ``base_code.version``.
    written_by: Producer | None = None


# -- ProgramDesc (.pdmodel) ------------------------------------------------------------------------

def _read_program_desc(data: bytes) -> _Program:
    desc = Message.parse(data, 0, len(data), "ProgramDesc")
    blocks = desc.messages(1, "block")
    if not blocks:
        raise CorruptFileError("the program has no blocks")
    block = blocks[0]
    params, feeds = {}, set()
    for var in block.messages(3, "var"):
        kind = var.message(2, "var type") or Message(data, "var type", {})
        if kind.int(1) == _FEED_MINIBATCH:
            continue
        if kind.int(1) == _DENSE_TENSOR and var.int(3):
            params[var.string(1)] = _proto_param(kind)
        elif var.int(4):  # need_check_feed: an input of the model
            feeds.add(var.string(1))
    ops = [_proto_op(op) for op in block.messages(4, "op")]
    feeds.update(name for op in ops if op.type == "feed" for name in op.outputs)
    return _Program(params, ops, feeds, written_by(lambda: _program_version(desc.message(4, "version"))))


def _program_version(version: Message | None) -> Producer | None:
    """ProgramDesc ``version`` (Version, field 1): the writing Paddle's MAJOR * 10**6 + MINOR * 10**3 + PATCH."""
    number = version.int(1) if version else 0
    if number <= 0:
        return None
    shown = f"{number // 10**6}.{number // 10**3 % 1000}.{number % 1000}"
    return Producer.recorded("paddlepaddle", shown, "ProgramDesc")


def _proto_param(kind: Message) -> _Param:
    desc = (kind.message(3, "dense tensor") or Message(kind.buf, "", {})).message(1, "tensor desc")
    if desc is None:
        raise CorruptFileError("a stored tensor has no tensor description")
    return _Param(tuple(desc.ints(2)), _proto_dtype(desc.int(1)))


def _proto_dtype(code: int) -> str:
    if code not in _PROTO_DTYPES:
        raise CorruptFileError(f"unsupported Paddle data type {code}")
    return _PROTO_DTYPES[code]


def _proto_op(op: Message) -> _Op:
    def slots(number: int, what: str) -> dict[str, list[str]]:
        return {var.string(1): var.strings(2) for var in op.messages(number, what)}

    transposed = any(attr.string(1) in _TRANSPOSE_ATTRS and attr.int(10) for attr in op.messages(4, "attr"))
    outputs = [name for names in slots(2, "output").values() for name in names]
    return _Op(op.string(3), slots(1, "input"), outputs, transposed)


# -- PIR JSON (.json) --------------------------------------------------------------------------------

def _read_pir(data: bytes) -> _Program:
    try:
        document = json.loads(data)
        ops = document["program"]["regions"][0]["blocks"][0]["ops"]
        params, program_ops, feeds = {}, [], set[str]()
        for op in ops:
            kind = str(op["#"]).split(".", 1)[-1]
            outputs = op["O"] if isinstance(op["O"], list) else [op["O"]]
            if kind == "p":
                params[f"%{outputs[0]['%']}"] = (str(op["A"][-1]), _pir_param(outputs[0]["TT"]))
            elif kind == "data":
                feeds.update(f"%{o['%']}" for o in outputs)
            else:
                program_ops.append(_pir_op(kind, op, outputs))
    except (ValueError, RecursionError, KeyError, IndexError, TypeError) as e:
        raise CorruptFileError(f"not a PIR program: {plain(e)}") from None
    version = document["base_code"].get("version") if isinstance(document.get("base_code"), dict) else None
    return _named(params, program_ops, feeds,
                  Producer.recorded(format_version=f"PIR version {version}" if isinstance(version, int) else ""))


def _pir_param(value_type: dict) -> _Param:
    dtype, dims = value_type["D"][0]["#"].split(".", 1)[-1], value_type["D"][1]
    if dtype not in _PIR_DTYPES:
        raise CorruptFileError(f"unsupported PIR element type {dtype[:40]!r}")
    return _Param(tuple(int(d) for d in dims), _PIR_DTYPES[dtype])


def _pir_op(kind: str, op: dict, outputs: list) -> _Op:
    values = [f"%{i['%']}" for i in op["I"]]
    names = _PIR_SLOTS.get(kind, ())
    inputs = {names[k] if k < len(names) else str(k): [v] for k, v in enumerate(values)}
    attrs = {a["N"]: a["AT"].get("D") for a in op.get("A", [])}
    return _Op(kind, inputs, [f"%{o['%']}" for o in outputs if o],
               any(attrs.get(a) is True for a in _TRANSPOSE_ATTRS))


def _named(params: dict[str, tuple[str, _Param]], ops: list[_Op], feeds: set[str],
           written_by: Producer | None) -> _Program:
    """PIR values are numbered; parameters get their names back so both formats read alike."""
    names = {value: name for value, (name, _) in params.items()}
    renamed = [_Op(op.type, {slot: [names.get(v, v) for v in vs] for slot, vs in op.inputs.items()},
                   op.outputs, op.transposed) for op in ops]
    return _Program(dict(params.values()), renamed, feeds, written_by)


# -- the first layer --------------------------------------------------------------------------------

def _first_layer(program: _Program) -> tuple[int, _Op, str] | None:
    """(op index, op, weight name) of the first weight op applied to data descending from the feed."""
    derived = set(program.feeds)
    for k, op in enumerate(program.ops):
        if op.type in _WEIGHT_OPS:
            data_slot, weight_slot = _WEIGHT_OPS[op.type]
            weights = [w for w in op.inputs.get(weight_slot, []) if w in program.params]
            if weights and derived.intersection(op.inputs.get(data_slot, [])):
                return k, op, weights[0]
        if any(derived.intersection(names) for names in op.inputs.values()):
            derived.update(op.outputs)
    return None


def _layout(op: _Op, rank: int) -> str:
    if op.type.endswith("conv2d"):
        return "OIHW" if rank == 4 else "auto"
    return ("OI" if op.transposed else "IO") if rank == 2 else "auto"


# -- the reader ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Record:
    offset: int
    shape: tuple[int, ...]
    dtype: str


class PaddleInferenceReader:
    """Parameters in the order the program uses them, the first layer's weight first."""

    def __init__(self, program_path: ModelPath, params_path: ModelPath):
        limits.check("MAX_HEADER_BYTES", program_path.stat().st_size, "Paddle program file")
        data = program_path.read_bytes()
        program = _read_pir(data) if _PIR_MAGIC.match(data[:4096]) else _read_program_desc(data)
        limits.check("MAX_TENSORS", len(program.params) + len(program.ops), "Paddle parameters and ops")
        if not params_path.is_file():
            raise FiltergridError(f"the program needs its parameters file {params_path.name[:120]} beside it")
        self._map = map_readonly(params_path)
        self._records = _index_params(self._map, len(self._map), program.params)
        self._infos = _listing(program)
        self._written_by = program.written_by

    def producer(self) -> Producer | None:
        return self._written_by

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        record = lookup(self._records, name)
        count = math.prod(record.shape)
        stored = array_at(self._map, dtypes.STORAGE[record.dtype], count, record.offset).reshape(record.shape)
        return dtypes.native(stored, record.dtype)

    def close(self) -> None:
        self._records = {}


def _listing(program: _Program) -> list[TensorInfo]:
    """Parameters in order of first use; only the first layer's weight is a candidate."""
    used = [n for op in program.ops for names in op.inputs.values() for n in names if n in program.params]
    order = list(dict.fromkeys(used + sorted(program.params)))
    first = _first_layer(program)
    infos = []
    for name in order:
        param = program.params[name]
        if first and name == first[2]:
            k, op, _ = first
            why = f"weight of {op.type} op #{k}, the first weight op applied to the feed (program order)"
            infos.append(tensor_info(name, param.shape, param.dtype, _layout(op, len(param.shape)), "CHW", why))
        else:
            why = "a later layer's parameter" if first else "no conv/matmul op takes the feed: no first layer"
            infos.append(TensorInfo(name, param.shape, param.dtype, PADDLE.layout_for(param.shape), "CHW", why, False))
    infos.sort(key=lambda i: not i.candidate)
    return infos


def _index_params(buf, size: int, params: dict[str, _Param]) -> dict[str, _Record]:
    """Walk the save_combine records (sorted names) and check each against the program's declaration."""
    if len(params) * _RECORD_HEAD > size:
        raise CorruptFileError(f"{len(params)} parameters cannot fit in a {size:,}-byte .pdiparams file")
    records, pos = {}, 0
    for name in sorted(params):
        record, pos = _record(buf, size, pos, name)
        declared = params[name]
        if record.dtype != declared.dtype or record.shape != declared.shape:
            raise CorruptFileError(f"parameter {name[:120]!r} is stored as {list(record.shape)} {record.dtype} "
                                   f"but the program declares {list(declared.shape)} {declared.dtype}")
        records[name] = record
    if pos != size:
        raise CorruptFileError(f"the .pdiparams file has {size - pos:,} bytes after its {len(params)} parameters")
    return records


def _record(buf, size: int, pos: int, name: str) -> tuple[_Record, int]:
    what = f"parameter {name[:120]!r}"
    check_extent(pos, 12, size, what)
    version, lod_level = struct.unpack("<IQ", window(buf, pos, 12))
    if version != 0 or lod_level > limits.MAX_NESTING:
        raise CorruptFileError(f"{what} has record version {version} and {lod_level} LoD levels")
    pos += 12
    for _ in range(lod_level):
        check_extent(pos, 8, size, what)
        pos += 8 + struct.unpack("<Q", window(buf, pos, 8))[0]
    check_extent(pos, 8, size, what)
    version, desc_size = struct.unpack("<Ii", window(buf, pos, 8))
    limits.check("MAX_HEADER_BYTES", max(desc_size, 0), f"{what} TensorDesc")
    check_extent(pos + 8, desc_size, size, f"{what} TensorDesc")
    desc_bytes = bytes(window(buf, pos + 8, desc_size))
    desc = Message.parse(desc_bytes, 0, desc_size, f"{what} TensorDesc")
    dtype = _proto_dtype(desc.int(1))
    pos += 8 + desc_size
    shape = dtypes.check_fits(desc.ints(2), dtype, size - pos, what)
    return _Record(pos, shape, dtype), pos + dtypes.nbytes(shape, dtype)
