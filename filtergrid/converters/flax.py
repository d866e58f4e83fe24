"""Flax/JAX checkpoints written by ``flax.serialization.to_bytes`` / ``msgpack_serialize``.

The file is one msgpack map: the state dict of the saved pytree (``{"params": {"Conv_0":
{"kernel", "bias"}, ...}}`` or a whole TrainState). Arrays are msgpack ext type 1 whose payload is
itself msgpack ``(shape, dtype name, C-order bytes)``; ext 3 is a NumPy scalar. Flax builds the
params dict in the order modules are created when the model is initialised (call order), and
``to_state_dict`` and msgpack keep that insertion order, so the first kernel in stored order is
the first layer. Under a ``params`` key only those are candidates (optimizer moments repeat the
names). Kernels are channels last: Conv (kH, kW, in, out) = HWIO, Dense (in, out) = IO.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError, UnreadableFeatureError, plain
from ..layout import CHANNELS_LAST
from ..safeio import ModelPath, map_readonly, model_path, window
from .base import Probe, natural_key, prefer_layer_weights, tensor_info

_NDARRAY, _NPSCALAR = 1, 3
#: An ext header (ext8/16/32) of type 1 whose payload starts with a 3-element array.
_ARRAY_EXT = re.compile(rb"(\xc7[\s\S]|\xc8[\s\S]{2}|\xc9[\s\S]{4})\x01\x93")
#: dtype names flax writes (``arr.dtype.name``) that filtergrid decodes.
_DTYPES = {"float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64",
           "uint16", "uint32", "uint64", "bool"}


def sniff(probe: Probe) -> bool:
    """A msgpack map (fixmap, map16, map32) holding a flax ndarray ext in its first bytes."""
    head = probe.head
    return bool(head) and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)) and \
        _ARRAY_EXT.search(head) is not None


@dataclass(frozen=True)
class _Array:
    shape: tuple[int, ...]
    dtype: str
    start: int  # the C-order bytes are [start, stop) of the mapped file, read only when shown
    stop: int


@dataclass(frozen=True)
class _Bytes:
    """A msgpack bin: where its bytes are, not the bytes (a kernel's gigabyte is never copied)."""

    start: int
    stop: int


#: Type byte -> (kind, width of its big-endian length or count) for the sized msgpack types.
_SIZED = {0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4), 0xC7: ("ext", 1), 0xC8: ("ext", 2),
          0xC9: ("ext", 4), 0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4), 0xDC: ("array", 2),
          0xDD: ("array", 4), 0xDE: ("map", 2), 0xDF: ("map", 4)}
#: Type byte -> bytes of its body: numbers, and the fixext types (one type byte, then 1-16 data bytes).
_FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def _header(buf, pos: int, end: int) -> tuple[str, int, int]:
    """(kind, element count or body bytes, body start) of the msgpack object at ``pos``."""
    if pos >= end:
        raise CorruptFileError(f"msgpack data ends at byte {pos:,} inside an object")
    b = buf[pos]
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return "scalar", 0, pos + 1
    for low, kind, mask in ((0x80, "map", 0x0F), (0x90, "array", 0x0F), (0xA0, "str", 0x1F)):
        if low <= b <= low + mask:
            return kind, b & mask, pos + 1
    if b in _SIZED:
        kind, width = _SIZED[b]
        if pos + 1 + width > end:
            raise CorruptFileError(f"msgpack data ends inside the header at byte {pos:,}")
        return kind, int.from_bytes(bytes(buf[pos + 1:pos + 1 + width]), "big"), pos + 1 + width
    if b in _FIXED:
        return "scalar", _FIXED[b], pos + 1
    if b in _FIXEXT:
        return "ext", _FIXEXT[b], pos + 1
    raise CorruptFileError(f"msgpack type byte 0x{b:02x} at byte {pos:,} is not one flax writes")


def _parse(buf, pos: int, end: int, depth: int = 0):
    """(value, position after it) of the msgpack object at ``pos``: maps, arrays and strings built,
    bins and flax arrays as spans of ``buf``. Each element takes a byte, so loops are bounded by
    ``end - pos``; nesting by MAX_NESTING."""
    if depth > limits.MAX_NESTING:
        raise limits.exceeded("MAX_NESTING", "flax tree depth", depth)
    kind, n, body = _header(buf, pos, end)
    if kind in ("map", "array"):
        if n > end - body:
            raise CorruptFileError(f"msgpack {kind} at byte {pos:,} declares {n:,} items, more than the bytes left")
        items = []
        for _ in range(n * 2 if kind == "map" else n):
            item, body = _parse(buf, body, end, depth + 1)
            items.append(item)
        if kind == "map" and not all(isinstance(key, (str, int, float, bool, type(None))) for key in items[::2]):
            raise CorruptFileError(f"msgpack map at byte {pos:,} has a key that is not a string or number")
        return (dict(zip(items[::2], items[1::2])) if kind == "map" else items), body
    stop = body + n + (kind == "ext")  # an ext's body is its type byte, then n bytes
    if stop > end:
        raise CorruptFileError(f"msgpack {kind} at byte {pos:,} runs past the end ({n:,} bytes)")
    if kind == "bin":
        return _Bytes(body, stop), stop
    if kind == "ext":
        return _ext(buf, buf[body], body + 1, stop, depth), stop
    return _scalar(bytes(buf[pos:stop])), stop


def _scalar(data: bytes):
    import msgpack

    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise CorruptFileError(f"a msgpack value is malformed: {plain(e)}") from None


def _ext(buf, code: int, start: int, stop: int, depth: int) -> _Array:
    """A flax array (ext 1: ``(shape, dtype name, bytes)``) or NumPy scalar (ext 3: ``(dtype, bytes)``)."""
    if code not in (_NDARRAY, _NPSCALAR):
        raise CorruptFileError(f"msgpack ext type {code} is not a flax array")
    fields, end = _parse(buf, start, stop, depth + 1)
    if code == _NPSCALAR:
        fields = [[], *fields] if isinstance(fields, list) and len(fields) == 2 else None
    if end != stop or not isinstance(fields, list) or len(fields) != 3 or not isinstance(fields[2], _Bytes):
        raise CorruptFileError("flax array record is not (shape, dtype, bytes)")
    shape, dtype, data = fields
    dtype = str(dtype)[:40]
    if dtype not in _DTYPES:
        raise CorruptFileError(f"flax array dtype {dtype!r} is not one filtergrid reads")
    size = data.stop - data.start
    shape = dtypes.check_fits(shape if isinstance(shape, list) else (), dtype, size, "flax array")
    if dtypes.nbytes(shape, dtype) != size:
        raise CorruptFileError(f"flax array declares {list(shape)} {dtype} but holds {size:,} bytes")
    return _Array(shape, dtype, data.start, data.stop)


def _leaves(tree, prefix: str = "", depth: int = 0):
    """(path, array) of every array in stored (insertion) order, bounded by MAX_NESTING."""
    if depth > limits.MAX_NESTING:
        raise limits.exceeded("MAX_NESTING", "flax tree depth", depth)
    if isinstance(tree, _Array):
        yield prefix, tree
    elif isinstance(tree, dict):
        if tree.get("__msgpack_chunked_array__"):
            raise UnreadableFeatureError(f"{prefix!r} is a chunked array (over 1 GiB); filtergrid does not join chunks")
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}/{key}" if prefix else str(key)[:256], depth + 1)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{prefix}/{i}" if prefix else str(i), depth + 1)


def _ports(shape: tuple[int, ...]) -> tuple[int, int]:
    """(inputs, outputs) of a channels-last kernel: (kH, kW, in, out), (k, in, out), (in, out)."""
    return shape[-2], shape[-1]


#: How the first layer is chosen when a tree's keys were sorted (:func:`_unfed_first`).
INFERRED = "first of the kernels no other kernel feeds, convolutions first"


def _unfed_first(infos: list[TensorInfo]) -> list[TensorInfo]:
    """Candidates in forward order when the keys were sorted: first the kernels whose input size no
    other kernel outputs (nothing in the file feeds them), convolutions before dense layers, then
    the rest in natural name order (flax numbers Conv_0, Conv_1 ... in creation order)."""
    outputs = [_ports(i.shape)[1] for i in infos]

    def key(item: tuple[int, TensorInfo]) -> tuple:
        index, info = item
        fed = any(_ports(info.shape)[0] == out for j, out in enumerate(outputs) if j != index)
        return (fed, len(info.shape) < 4, natural_key(info.name))

    return [info for _, info in sorted(enumerate(infos), key=key)]


def params_listing(entries: list[tuple[str, tuple[int, ...], str]], has_params: bool, keys_sorted: bool,
                   why: str) -> list[TensorInfo]:
    """Channels-last kernels of a JAX pytree (flax msgpack, Orbax) in forward order.

    ``entries`` are (path, shape, dtype) in stored order. With a ``params`` subtree only its kernels
    are candidates (optimizer moments repeat the names). ``keys_sorted``: the stored order is JAX's
    sorted-key order, not creation order, so the forward order is inferred (:func:`_unfed_first`).
    """
    infos = []
    for name, shape, dtype in entries:
        info = tensor_info(name, shape, dtype, CHANNELS_LAST.layout_for(shape), CHANNELS_LAST.flatten, why)
        if info.candidate and has_params and not name.startswith("params/"):
            info = dataclasses.replace(info, candidate=False,
                                       role="outside the params tree (optimizer state, batch statistics)")
        infos.append(info)
    infos = prefer_layer_weights(infos)
    if not keys_sorted:
        return infos
    return _unfed_first([i for i in infos if i.candidate]) + [i for i in infos if not i.candidate]


class FlaxReader:
    def __init__(self, tree: dict, buf):
        self._buf = buf
        self._arrays = dict(_leaves(tree))
        self._params = isinstance(tree.get("params"), dict)
        modules = list(tree["params"] if self._params else tree)
        #: JAX sorts dict keys whenever a tree passes through jit/tree_map, which erases flax's
        #: creation order; keys already in sorted order may be that.
        self._sorted = len(modules) > 1 and modules == sorted(modules, key=str)  # msgpack keys need not be text

    def _why(self) -> str:
        if self._sorted:
            return f"module keys are in sorted order (JAX sorts dict keys), so creation order is lost: {INFERRED}"
        return "first kernel in the params tree's stored order (flax's module creation order)"

    def tensors(self) -> list[TensorInfo]:
        entries = [(name, a.shape, a.dtype) for name, a in self._arrays.items()]
        return params_listing(entries, self._params, self._sorted, self._why())

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._arrays:
            raise TensorNotFoundError(f"no array {name[:200]!r} in the flax checkpoint")
        a = self._arrays[name]
        return dtypes.native(dtypes.from_buffer(window(self._buf, a.start, a.stop - a.start), a.dtype, a.shape), a.dtype)

    def close(self) -> None:
        self._arrays.clear()


def open(path: ModelPath) -> FlaxReader:  # noqa: A001 - the registry's verb
    """The tree is walked over a map of the file: only the shown kernel's bytes are ever read."""
    buf = map_readonly(model_path(path))
    tree, end = _parse(buf, 0, len(buf))
    if not isinstance(tree, dict):
        raise CorruptFileError("flax checkpoint is not a msgpack map")
    if end != len(buf):
        raise CorruptFileError(f"flax checkpoint has {len(buf) - end:,} bytes after its msgpack map")
    return FlaxReader(tree, buf)
